"""Sign-in gates: the second-factor gate and the absolute session timeout (docs/security.md §1, §5).

They live with the accounts app because they enforce its sign-in rules; ``portal/settings.py``
lists them in ``MIDDLEWARE``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from accounts.selectors import user_has_confirmed_factor

AUTH_STARTED_KEY = "lightbox_auth_started"
# [session key, time] of the last time this session's activity was written.
ACTIVITY_KEY = "lightbox_activity"


class AbsoluteSessionTimeoutMiddleware:
    """Ends a signed-in session 12 hours after sign-in, however active (docs/security.md §5).

    The idle timeout is Django's own (``SESSION_COOKIE_AGE``, slid by ``SessionActivityMiddleware``);
    this adds the ceiling that activity cannot extend.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            started = request.session.get(AUTH_STARTED_KEY)
            now = time.time()
            if started is None:
                request.session[AUTH_STARTED_KEY] = now
            elif now - float(started) > settings.SESSION_ABSOLUTE_TIMEOUT:
                logout(request)
                return HttpResponseRedirect(reverse("account_login") + "?expired=1")
        return self.get_response(request)


class SessionActivityMiddleware:
    """Slides the idle timeout and records the session's activity at most once a minute.

    Replaces ``SESSION_SAVE_EVERY_REQUEST`` and allauth's ``UserSessionsMiddleware``, which
    wrote the session row and its ``UserSession`` (last seen, IP, browser) on every request: two
    UPDATEs per page (issue 18). Here a signed-in request writes them only when the last write
    is ``SESSION_ACTIVITY_INTERVAL`` seconds old or belongs to another session key (a new
    session, or one whose id was cycled at the second factor). Marking the session modified is
    what makes ``SessionMiddleware`` save it and so push its expiry 15 minutes ahead; between
    writes the expiry stays where it is, so the idle timeout is 15 minutes after the last write:
    between 14 and 15 minutes after the last request, never longer.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if session.session_key and request.user.is_authenticated:
            mark = session.get(ACTIVITY_KEY)
            now = time.time()
            fresh = (
                isinstance(mark, list) and len(mark) == 2 and mark[0] == session.session_key
                and 0 <= now - float(mark[1]) < settings.SESSION_ACTIVITY_INTERVAL
            )
            if not fresh:
                UserSession.objects.create_from_request(request)
                session[ACTIVITY_KEY] = [session.session_key, now]
        return self.get_response(request)


def second_factor_step(view: Callable) -> Callable:
    """Mark a view that a signed-in user may reach before passing the second factor.

    Only the enrolment and verification steps (and logout) carry this mark.
    """
    view.second_factor_step = True  # type: ignore[attr-defined]
    return view


class SecondFactorGateMiddleware:
    """Deny everything to a session that has a password but no verified second factor.

    Runs after ``LoginRequiredMiddleware`` (anonymous users are already sent to the login page)
    and django-otp's ``OTPMiddleware`` (which sets ``user.is_verified()``). A signed-in,
    unverified user reaches only views marked ``@second_factor_step`` and the public
    (``@login_not_required``) views; the Django admin is never public here. Everything else
    redirects to enrolment (no factor yet) or verification; API paths answer 401.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable, view_args, view_kwargs):
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        if getattr(view_func, "second_factor_step", False):
            return None
        match = request.resolver_match
        is_admin = match is not None and match.namespace == "admin"
        if not is_admin and getattr(view_func, "login_required", True) is False:
            return None
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "second_factor_required"}, status=401)
        target = "accounts-2fa-verify" if user_has_confirmed_factor(user) else "accounts-2fa-enrol"
        url = reverse(target)
        if request.method == "GET":
            url += "?" + urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(url)

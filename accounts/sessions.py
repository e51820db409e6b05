"""The steps of sign-in that live in the browser's session, for the views to call.

Services take an Actor, never a request (STYLE.md); but marking a session as having passed the
second factor is django-otp's ``login(request, device)``, and a key being enrolled is kept in the
session until its first code is confirmed. Those two need the request, so they are here, next to
the views, and the services get plain values (the session key, whether the session is verified).
"""

from __future__ import annotations

from functools import lru_cache

from allauth.usersessions.adapter import get_adapter as get_usersessions_adapter
from allauth.usersessions.models import UserSession
from django.db import transaction
from django.http import Http404, HttpRequest
from django.utils.translation import gettext as _
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.models import Device
from ua_parser import parse as ua_parse

from core.actor import Actor

# The authenticator key being enrolled, encrypted (core.crypto), with the user it was made for.
PENDING_AUTHENTICATOR = "accounts_pending_authenticator"


def session_mark_verified(request: HttpRequest, device: Device) -> None:
    """After a service accepted ``device``'s code: a new session id (docs/security.md §5, as
    Django does at login), then django-otp marks the session verified."""
    request.session.cycle_key()
    otp_login(request, device)


def pending_key(request: HttpRequest) -> str | None:
    """The key this session is enrolling, if it is the signed-in user's."""
    pending = request.session.get(PENDING_AUTHENTICATOR)
    if isinstance(pending, dict) and pending.get("user") == request.user.pk and pending.get("key"):
        return pending["key"]
    return None


def pending_key_keep(request: HttpRequest, key: str) -> None:
    request.session[PENDING_AUTHENTICATOR] = {"user": request.user.pk, "key": key}


def pending_key_drop(request: HttpRequest) -> None:
    request.session.pop(PENDING_AUTHENTICATOR, None)


# --- The sessions list: which browser, and whether the sign-in was finished -------------------


@lru_cache(maxsize=512)
def _parse(user_agent: str) -> tuple[str, str, str]:
    """(browser, major version, operating system), "" where ua-parser recognises nothing.
    Cached: the rules are regular expressions, and a list shows the same few browsers."""
    result = ua_parse(user_agent[:1000])
    agent, system = result.user_agent, result.os
    browser = agent.family if agent is not None and agent.family != "Other" else ""
    major = (agent.major or "") if browser else ""
    os = system.family if system is not None and system.family != "Other" else ""
    return browser, major, os


def browser_name(user_agent: str) -> str:
    """A browser's ``User-Agent`` as a person reads it: "Chrome 124 on Windows", "Mobile Safari
    17 on iOS"; "Unknown browser" when ua-parser (uap-core's rules, maintained upstream)
    recognises nothing."""
    browser, major, os = _parse(user_agent or "")
    if not browser:
        return _("A browser on %(os)s") % {"os": os} if os else _("Unknown browser")
    name = f"{browser} {major}" if major else browser
    return _("%(browser)s on %(os)s") % {"browser": name, "os": os} if os else name


def sign_in_unfinished(session: UserSession) -> bool:
    """Whether ``session`` gave the password but not yet the second factor: django-otp marks a
    finished sign-in by the device id it keeps in the session (``otp_device_id``). Such a
    session sees no patient data (docs/security.md §1), but it means someone knew the password."""
    store = session._session_store(session.session_key)
    return not store.get(DEVICE_ID_SESSION_KEY)


@transaction.atomic
def session_end(*, actor: Actor, session_id: int, current_key: str | None) -> None:
    """The signed-in person ends one of their other sessions (an unfinished sign-in, or a
    browser they no longer use), as allauth's "sign out everywhere else" does for all of them.

    Callers: the sessions list and the security page. ``Http404`` for another person's session
    or a missing one (docs/security.md §9), and for the acting session itself (that is "Sign
    out"). Records no access event: no patient data is read."""
    session = UserSession.objects.filter(pk=session_id, user_id=actor.user_id).first() if actor.user_id else None
    if session is None or session.session_key == current_key:
        raise Http404("No such session.")
    get_usersessions_adapter().end_sessions([session])

"""Recent reauthentication, checked in the view and again in the service (docs/security.md §6).

Every caller names the action the password confirms (a key of ``ACTIONS``); the password page
then says "Before you <action>, enter your password again" instead of one sentence for all. The
action waits in the session beside the URL the page will return to, so it is shown only for that
return (a stale one from an abandoned attempt is not).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from allauth.account.decorators import reauthentication_required as allauth_reauthentication_required
from allauth.account.internal.flows.reauthentication import (
    is_reauthentication_required,
    raise_if_reauthentication_required,
)
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import Resolver404, resolve, reverse
from django.utils.translation import gettext_lazy as _

# Query parameter of the page a download started from, once the password has been confirmed.
DOWNLOAD_READY = "download"
SESSION_KEY = "lightbox_reauth_action"

# What the password confirms, as the end of "Before you ..., enter your password again".
ACTIONS = {
    "authenticator_add": _("add an authenticator app"),
    "passkey_add": _("add a passkey"),
    "recovery_codes": _("make new recovery codes"),
    "factor_rename": _("rename a way of signing in"),
    "factor_remove": _("remove a way of signing in"),
    "email_change": _("change your email address"),
    "password_change": _("change your password"),
    "consent_change": _("change your choices about your scans"),
    "consent_policy": _("confirm your choices under the new consent policy"),
    "consent_paper": _("record a patient's paper consent form"),
    "export_new": _("make a copy of your scans to download"),
    "export_download": _("download your export"),
    "image_download": _("download this image"),
    "access_log_download": _("download your access log"),
}
# allauth's own pages ask for the password without passing through our callers.
ALLAUTH_PAGES = {"account_email": "email_change", "account_change_password": "password_change"}


def _check(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"Unknown reauthentication action {action!r}: add it to core.reauth.ACTIONS.")
    return action


def _remember(request: HttpRequest, action: str, back: str) -> None:
    request.session[SESSION_KEY] = {"action": action, "next": back}


def reauthentication_required(action: str, *, allow_get: bool = False) -> Callable:
    """allauth's ``reauthentication_required`` (the request resumes after the password), naming
    ``action`` on the password page."""
    _check(action)

    def decorator(view: Callable) -> Callable:
        guarded = allauth_reauthentication_required(view, allow_get=allow_get)

        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not (allow_get and request.method == "GET") and is_reauthentication_required(request, app=""):
                _remember(request, action, request.get_full_path())
            return guarded(request, *args, **kwargs)

        return wrapper

    return decorator


def require_recent_reauthentication(request: HttpRequest, *, action: str) -> None:
    """Raise allauth's ``ReauthenticationRequired`` unless the password was re-entered within
    ``ACCOUNT_REAUTHENTICATION_TIMEOUT``. allauth's middleware turns the exception into a
    redirect to the reauthentication page that resumes the original request afterwards; that
    page names ``action``."""
    _check(action)
    if is_reauthentication_required(request, app="account"):
        _remember(request, action, request.get_full_path())
    raise_if_reauthentication_required(request, app="account")


def reauthenticate_before_download(request: HttpRequest, *, back: str, action: str) -> HttpResponseRedirect | None:
    """None when the password was re-entered recently; otherwise a redirect to the password page
    (naming ``action``) that then returns the patient to ``back`` with ``download=ready`` added
    (docs/security.md §6).

    Why not allauth's usual resume of the request: a file response does not move the browser,
    so the password page stayed on screen while the file arrived, and typing the password again
    downloaded (and logged) a second copy. Back on the page the download started from, the
    patient is told the password is confirmed and downloads from there, once.
    """
    _check(action)
    if not is_reauthentication_required(request, app="account"):
        return None
    back_url = f"{back}{'&' if '?' in back else '?'}{DOWNLOAD_READY}=ready"
    _remember(request, action, back_url)
    return HttpResponseRedirect(f"{reverse('account_reauthenticate')}?{urlencode({'next': back_url})}")


def download_ready(request: HttpRequest) -> bool:
    """True on the page the patient came back to after confirming the password for a download."""
    return request.GET.get(DOWNLOAD_READY) == "ready"


def confirmed_action(request: HttpRequest) -> str:
    """On the password page: what the password confirms ("" when no caller said), for the
    return to the page's ``next``."""
    back = request.GET.get("next") or request.POST.get("next") or ""
    remembered = request.session.get(SESSION_KEY) or {}
    if back and remembered.get("next") == back and remembered.get("action") in ACTIONS:
        return str(ACTIONS[remembered["action"]])
    try:
        name = resolve(back.split("?")[0]).url_name if back else None
    except Resolver404:
        name = None
    return str(ACTIONS[ALLAUTH_PAGES[name]]) if name in ALLAUTH_PAGES else ""

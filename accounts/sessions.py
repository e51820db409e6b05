"""The steps of sign-in that live in the browser's session, for the views to call.

Services take an Actor, never a request (STYLE.md); but marking a session as having passed the
second factor is django-otp's ``login(request, device)``, and a key being enrolled is kept in the
session until its first code is confirmed. Those two need the request, so they are here, next to
the views, and the services get plain values (the session key, whether the session is verified).
"""

from __future__ import annotations

from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.models import Device

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

"""Reads about a user's own account. Every function narrows to ``user``."""

from __future__ import annotations

from allauth.core.internal.sessionkit import get_session_user
from allauth.usersessions.models import UserSession
from django.db.models import QuerySet
from django.http import Http404
from django_otp import devices_for_user
from django_otp.models import Device

from accounts.models import AuthenticatorApp, RecoveryCodeSet, SignInEvent, User


def user_has_confirmed_factor(user: User) -> bool:
    """True when the user has a factor that can sign in on its own (app or passkey).

    Recovery codes alone do not count: they exist only as a fallback for a real factor.
    """
    return any(not isinstance(d, RecoveryCodeSet) for d in devices_for_user(user, confirmed=True))


def sign_in_factors(user: User) -> list[Device]:
    """Authenticator apps and passkeys, oldest first, for the security page."""
    factors = [d for d in devices_for_user(user, confirmed=True) if not isinstance(d, RecoveryCodeSet)]
    return sorted(factors, key=lambda d: (getattr(d, "created_at", None) is None, getattr(d, "created_at", None) or 0))


def factor_for_user(user: User, persistent_id: str) -> Device:
    """One of ``user``'s factors by persistent id; another user's device is a 404 like a missing one.

    Looked up among the user's own factors rather than with ``Device.from_persistent_id``: that
    loads whatever model the id names and crashes on a non-device label like ``accounts.user/1``.
    """
    for device in sign_in_factors(user):
        if device.persistent_id == persistent_id:
            return device
    raise Http404


def recovery_codes_left(user: User) -> int:
    codeset = RecoveryCodeSet.objects.filter(user=user, confirmed=True).first()
    return codeset.codes.count() if codeset else 0


def pending_authenticator(*, user: User, pending_key: str) -> AuthenticatorApp:
    """The authenticator being enrolled, as an unsaved device (for its QR code and key as text):
    its key waits in the session, encrypted, until a code confirms it (``accounts.services``)."""
    return AuthenticatorApp(user=user, name="Authenticator app", confirmed=False, encrypted_key=pending_key)


def recent_sign_ins(user: User, limit: int = 20) -> QuerySet[SignInEvent]:
    return SignInEvent.objects.filter(user=user)[:limit]


def has_passkey(user: User) -> bool:
    from django_otp_webauthn.models import WebAuthnCredential

    return WebAuthnCredential.objects.filter(user=user, confirmed=True).exists()


def signed_in_sessions(user: User) -> list[UserSession]:
    """Where the user is signed in: their sessions that are still alive, for the security page.

    Reads only. allauth's ``purge_and_list`` also deletes the rows of sessions that ended, and a
    page view writes nothing; allauth's own sessions page (where "sign out everywhere else" posts)
    tidies them.
    """
    # allauth's own store for the row (the configured SESSION_ENGINE), as its purge reads it.
    return [s for s in UserSession.objects.filter(user_id=user.pk) if get_session_user(s._session_store(s.session_key))]

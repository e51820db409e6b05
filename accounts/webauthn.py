"""Passkeys (django-otp-webauthn) as a second factor, wired into Lightbox's rules.

The library's views do the WebAuthn ceremonies; these subclasses add what Lightbox needs:
registering a passkey needs a verified session and a recent reauthentication (docs/security.md §6)
and signs out other sessions; using one as the second factor is recorded as a sign-in
(``services.passkey_sign_in_record``) and rotates the session id like a TOTP code.
"""

from __future__ import annotations

from allauth.core.exceptions import ReauthenticationRequired
from django_otp_webauthn import exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from accounts import services, sessions
from accounts.middleware import second_factor_step
from core.reauth import require_recent_reauthentication


class _RegistrationRules:
    def check_can_register(self) -> None:
        super().check_can_register()  # type: ignore[misc]
        if not self.request.user.is_verified():  # type: ignore[attr-defined]
            raise exceptions.NotVerified()
        try:
            require_recent_reauthentication(self.request, action="passkey_add")  # type: ignore[attr-defined]
        except ReauthenticationRequired as exc:
            raise exceptions.NotVerified(detail="Please confirm your password again, then add the passkey.") from exc


class PasskeyRegistrationBegin(_RegistrationRules, BeginCredentialRegistrationView):
    pass


class PasskeyRegistrationComplete(_RegistrationRules, CompleteCredentialRegistrationView):
    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        if response.status_code < 400:
            # A new second factor: every other session signs in again (docs/security.md §5).
            services.sessions_end_others(actor=self.request.actor, session_key=self.request.session.session_key)
        return response


class PasskeyAuthenticationComplete(CompleteCredentialAuthenticationView):
    def complete_auth(self, device):
        if not self.request.user.is_authenticated:
            # Passkeys are a second factor here, never a way around the password.
            raise exceptions.NotAuthenticated()
        if device.user_id != self.request.user.pk:
            raise exceptions.CredentialNotFound()
        services.passkey_sign_in_record(actor=self.request.actor, device=device)
        sessions.session_mark_verified(self.request, device)


registration_begin = PasskeyRegistrationBegin.as_view()
registration_complete = PasskeyRegistrationComplete.as_view()
authentication_begin = second_factor_step(BeginCredentialAuthenticationView.as_view())
authentication_complete = second_factor_step(PasskeyAuthenticationComplete.as_view())


def client_config(request) -> dict:
    """The settings django-otp-webauthn's browser script reads (its template tag's shape, with
    our own URLs because our views wrap the library's)."""
    from django.middleware import csrf
    from django.urls import reverse

    return {
        "autocompleteLoginFieldSelector": None,
        "nextFieldSelector": "input[name='next']",
        "csrfToken": csrf.get_token(request),
        "beginAuthenticationUrl": reverse("accounts-passkey-auth-begin"),
        "completeAuthenticationUrl": reverse("accounts-passkey-auth-complete"),
        "beginRegistrationUrl": reverse("accounts-passkey-register-begin"),
        "completeRegistrationUrl": reverse("accounts-passkey-register-complete"),
    }

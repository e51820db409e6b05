from __future__ import annotations

from django.urls import path

from accounts import views, webauthn

urlpatterns = [
    path("accounts/signup/", views.signup, name="account_signup"),
    path("account/2fa/setup/", views.enrol, name="accounts-2fa-enrol"),
    path("account/2fa/", views.verify, name="accounts-2fa-verify"),
    path("account/security/", views.security, name="accounts-security"),
    path("account/security/sessions/<int:session_id>/end/", views.session_end, name="accounts-session-end"),
    path("account/security/time-zone/", views.time_zone, name="accounts-time-zone"),
    path("account/security/recovery-codes/", views.recovery_regenerate, name="accounts-recovery-regenerate"),
    path("account/security/factors/<path:device_id>/rename/", views.factor_rename, name="accounts-factor-rename"),
    path("account/security/factors/<path:device_id>/remove/", views.factor_remove, name="accounts-factor-remove"),
    path("account/security/passkeys/add/", views.passkey_add, name="accounts-passkey-add"),
    path("account/passkeys/registration/begin/", webauthn.registration_begin, name="accounts-passkey-register-begin"),
    path("account/passkeys/registration/complete/", webauthn.registration_complete, name="accounts-passkey-register-complete"),
    path("account/passkeys/authentication/begin/", webauthn.authentication_begin, name="accounts-passkey-auth-begin"),
    path("account/passkeys/authentication/complete/", webauthn.authentication_complete, name="accounts-passkey-auth-complete"),
]

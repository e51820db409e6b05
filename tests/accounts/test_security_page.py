"""The account security page and its actions (docs/security.md §5, 6, 11).

Each view: anonymous -> login; password-only -> the second-factor step; another user's device
-> 404 like a missing one; wrong method -> 405; changes need a recent reauthentication and CSRF.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.template.defaultfilters import date as date_filter
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp_webauthn.models import WebAuthnCredential

from accounts import services
from accounts.models import AuthenticatorApp, RecoveryCode, RecoveryCodeSet, SignInEvent
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.factories import PASSWORD, AuthenticatorAppFactory, actor_of, totp_code

SECURITY_URL = "/account/security/"
REGENERATE_URL = "/account/security/recovery-codes/"
PASSKEY_ADD_URL = "/account/security/passkeys/add/"
LOGIN_URL = "/accounts/login/"
VERIFY_URL = "/account/2fa/"
REAUTH_URL = "/accounts/reauthenticate/"


def _app(user) -> AuthenticatorApp:
    return AuthenticatorApp.objects.filter(user=user, confirmed=True).order_by("pk").first()


def _rename_url(device) -> str:
    return f"/account/security/factors/{device.persistent_id}/rename/"


def _remove_url(device) -> str:
    return f"/account/security/factors/{device.persistent_id}/remove/"


def _path(response) -> str:
    return urlparse(response["Location"]).path


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _recovery_hashes(user) -> set[str]:
    return set(RecoveryCode.objects.filter(device__user=user).values_list("code_hash", flat=True))


# Every view on the page: (method that works, URL for the patient's own device).
VIEWS = {
    "security": ("get", lambda d: SECURITY_URL),
    "regenerate": ("post", lambda d: REGENERATE_URL),
    "rename": ("post", _rename_url),
    "remove": ("post", _remove_url),
    "passkey_add": ("get", lambda d: PASSKEY_ADD_URL),
}
WRONG_METHOD = {"get": "post", "post": "get"}


def _call(client: Client, view: str, device, *, method: str | None = None, **data):
    right, url = VIEWS[view]
    return getattr(client, method or right)(url(device), data)


# --- the common failure tests ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("view", VIEWS)
def test_anonymous_is_sent_to_login(client, patient, view):
    response = _call(client, view, _app(patient), name="x")

    assert response.status_code == 302 and _path(response) == LOGIN_URL
    assert _app(patient).name == "Phone"


@pytest.mark.django_db
@pytest.mark.parametrize("view", VIEWS)
def test_password_only_session_is_sent_to_the_second_factor(password_only_client, unverified_user, view):
    device = _app(unverified_user)
    services.recovery_codes_generate(actor=actor_of(unverified_user), user=unverified_user)
    before = _recovery_hashes(unverified_user)

    response = _call(password_only_client, view, device, name="x")

    assert response.status_code == 302 and _path(response) == VERIFY_URL
    assert AuthenticatorApp.objects.get(pk=device.pk).name == "Phone"
    assert _recovery_hashes(unverified_user) == before


@pytest.mark.django_db
@pytest.mark.parametrize("view", VIEWS)
def test_wrong_method_is_405(patient_client, patient, view):
    reauthenticate(patient_client)
    method = WRONG_METHOD[VIEWS[view][0]]

    response = _call(patient_client, view, _app(patient), method=method)

    assert response.status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["rename", "remove"])
def test_another_users_device_is_404_like_a_missing_one(patient_client, patient, other_patient, view):
    AuthenticatorAppFactory(user=other_patient, name="Second")  # so removal is not refused as the last
    theirs = _app(other_patient)
    reauthenticate(patient_client)

    response = _call(patient_client, view, theirs, name="Mine now")

    assert response.status_code == 404
    assert AuthenticatorApp.objects.get(pk=theirs.pk).name == "Phone"
    missing = AuthenticatorApp(pk=theirs.pk + 1000)
    assert _call(patient_client, view, missing, name="x").status_code == 404
    # Recovery codes are not a factor that can be renamed or removed here.
    services.recovery_codes_generate(actor=actor_of(patient), user=patient)
    codeset = RecoveryCodeSet.objects.get(user=patient)
    assert _call(patient_client, view, codeset, name="x").status_code == 404
    assert RecoveryCodeSet.objects.filter(pk=codeset.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("device_id", ["abc", "accounts.authenticatorapp/abc", "nosuch.model/1", "accounts.user/1"])
def test_malformed_device_ids_are_404(patient_client, device_id):
    reauthenticate(patient_client)

    response = patient_client.post(f"/account/security/factors/{device_id}/rename/", {"name": "x"})

    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["regenerate", "rename", "remove"])
def test_changes_need_recent_reauthentication(patient_client, patient, view):
    device = _app(patient)
    AuthenticatorAppFactory(user=patient, name="Tablet")
    services.recovery_codes_generate(actor=actor_of(patient), user=patient)
    before = _recovery_hashes(patient)

    response = _call(patient_client, view, device, name="Renamed")

    assert response.status_code == 302 and _path(response) == REAUTH_URL
    assert AuthenticatorApp.objects.get(pk=device.pk).name == "Phone"
    assert _recovery_hashes(patient) == before


@pytest.mark.django_db
def test_passkey_add_page_needs_recent_reauthentication(patient_client):
    response = patient_client.get(PASSKEY_ADD_URL)

    assert response.status_code == 302 and _path(response) == REAUTH_URL


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["regenerate", "rename", "remove"])
def test_csrf_is_enforced(patient, view):
    device = _app(patient)
    AuthenticatorAppFactory(user=patient, name="Tablet")
    services.recovery_codes_generate(actor=actor_of(patient), user=patient)
    before = _recovery_hashes(patient)
    client = login_verified(Client(enforce_csrf_checks=True), patient)
    client.get(SECURITY_URL)  # sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    reauthenticate_response = client.post(REAUTH_URL, {"password": PASSWORD, "csrfmiddlewaretoken": token})
    assert reauthenticate_response.status_code == 302

    forged = _call(client, view, device, name="Renamed")

    assert forged.status_code == 403
    assert AuthenticatorApp.objects.get(pk=device.pk).name == "Phone"
    assert _recovery_hashes(patient) == before

    # The same request with the token goes through: the 403 was CSRF and nothing else.
    genuine = _call(client, view, device, name="Renamed", csrfmiddlewaretoken=token)
    assert genuine.status_code in {200, 302}
    assert genuine.status_code != 302 or _path(genuine) == SECURITY_URL


# --- the page ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_security_page_lists_factors_recovery_codes_and_is_not_cached(patient_client, patient):
    AuthenticatorAppFactory(user=patient, name="Kitchen tablet")
    services.recovery_codes_generate(actor=actor_of(patient), user=patient)

    response = patient_client.get(SECURITY_URL)

    assert response.status_code == 200
    content = response.content.decode()
    assert "Phone" in content and "Kitchen tablet" in content
    assert [f.name for f in response.context["factors"]] == ["Phone", "Kitchen tablet"]
    assert response.context["recovery_left"] == 10
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_security_page_shows_only_own_factors(patient_client, other_patient):
    AuthenticatorAppFactory(user=other_patient, name="Someone else's phone")

    response = patient_client.get(SECURITY_URL)

    assert "Someone else&#x27;s phone" not in response.content.decode()
    assert all(f.user_id != other_patient.pk for f in response.context["factors"])


@pytest.mark.django_db
def test_recent_sign_ins_show_time_ip_and_browser(client, patient, other_patient):
    login_password_only(client, patient)
    client.post(
        VERIFY_URL,
        {"code": totp_code(_app(patient))},
        REMOTE_ADDR="192.0.2.77",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) LightboxTest/3.1",
    )
    SignInEvent.objects.create(user=other_patient, method="totp", ip="203.0.113.99", user_agent="NotYours/1.0")
    event = SignInEvent.objects.get(user=patient)

    response = client.get(SECURITY_URL)

    content = response.content.decode()
    assert "192.0.2.77" in content
    assert "LightboxTest/3.1" in content
    assert date_filter(event.occurred_at, "DATETIME_FORMAT") in content
    assert "Authenticator app" in content
    assert "203.0.113.99" not in content and "NotYours" not in content
    assert list(response.context["sign_ins"]) == [event]


# --- the actions -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_regenerating_recovery_codes_replaces_the_old_ones(patient_client, patient):
    old = services.recovery_codes_generate(actor=actor_of(patient), user=patient)
    reauthenticate(patient_client)

    response = patient_client.post(REGENERATE_URL)

    assert response.status_code == 200
    new = response.context["codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert all(code in response.content.decode() for code in new)
    assert "no-store" in response["Cache-Control"]
    assert RecoveryCode.objects.filter(device__user=patient).count() == 10
    # New codes work; old ones stop working. (New first: a failure would throttle the next try.)
    assert login_password_only(Client(), patient).post(VERIFY_URL, {"code": new[0]}).status_code == 302
    refused = login_password_only(Client(), patient).post(VERIFY_URL, {"code": old[0]})
    assert refused.status_code == 200 and refused.context["form"].errors["code"]


@pytest.mark.django_db
def test_renaming_a_factor(patient_client, patient):
    device = _app(patient)
    reauthenticate(patient_client)

    response = patient_client.post(_rename_url(device), {"name": "  Work phone  "})

    assert response.status_code == 302 and _path(response) == SECURITY_URL
    device.refresh_from_db()
    assert device.name == "Work phone"
    assert "Renamed." in _messages(response)


@pytest.mark.django_db
def test_renaming_with_an_invalid_name_changes_nothing(patient_client, patient):
    device = _app(patient)
    reauthenticate(patient_client)

    response = patient_client.post(_rename_url(device), {"name": "x" * 65})

    assert response.status_code == 302
    device.refresh_from_db()
    assert device.name == "Phone"


@pytest.mark.django_db
def test_removing_a_factor(patient_client, patient):
    first = _app(patient)
    second = AuthenticatorAppFactory(user=patient, name="Tablet")
    reauthenticate(patient_client)

    response = patient_client.post(_remove_url(second))

    assert response.status_code == 302 and _path(response) == SECURITY_URL
    assert not AuthenticatorApp.objects.filter(pk=second.pk).exists()
    assert AuthenticatorApp.objects.filter(pk=first.pk).exists()
    assert patient_client.get(SECURITY_URL).status_code == 200


@pytest.mark.django_db
def test_the_last_factor_cannot_be_removed(patient_client, patient):
    device = _app(patient)
    services.recovery_codes_generate(actor=actor_of(patient), user=patient)  # recovery codes do not count as a factor
    reauthenticate(patient_client)

    response = patient_client.post(_remove_url(device))

    assert response.status_code == 302 and _path(response) == SECURITY_URL
    assert AuthenticatorApp.objects.filter(pk=device.pk).exists()
    assert any("only way to sign in" in m for m in _messages(response))
    assert patient_client.get(SECURITY_URL).status_code == 200


@pytest.mark.django_db
def test_passkey_add_page_after_reauthentication(patient_client):
    reauthenticate(patient_client)

    response = patient_client.get(PASSKEY_ADD_URL)

    assert response.status_code == 200
    config = response.context["webauthn_config"]
    assert config["beginRegistrationUrl"] == "/account/passkeys/registration/begin/"
    assert config["csrfToken"]
    assert "no-store" in response["Cache-Control"]


def _passkey(user, name: str = "Laptop passkey") -> WebAuthnCredential:
    return WebAuthnCredential.objects.create(
        user=user, name=name, confirmed=True, credential_id=os.urandom(32), public_key=b"\xa0", sign_count=0
    )


@pytest.mark.django_db
def test_a_passkey_is_a_factor_that_can_be_renamed_and_removed(patient_client, patient):
    passkey = _passkey(patient)

    page = patient_client.get(SECURITY_URL)
    assert [f.persistent_id for f in page.context["factors"]] == [_app(patient).persistent_id, passkey.persistent_id]
    assert "Laptop passkey" in page.content.decode() and "Passkey" in page.content.decode()

    reauthenticate(patient_client)
    patient_client.post(_rename_url(passkey), {"name": "Work laptop"})
    passkey.refresh_from_db()
    assert passkey.name == "Work laptop"

    response = patient_client.post(_remove_url(passkey))
    assert response.status_code == 302
    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()


@pytest.mark.django_db
def test_the_app_can_go_when_a_passkey_remains_but_then_the_passkey_is_the_last(patient_client, patient):
    app = _app(patient)
    passkey = _passkey(patient)
    reauthenticate(patient_client)

    patient_client.post(_remove_url(app))
    assert not AuthenticatorApp.objects.filter(pk=app.pk).exists()

    # The session was verified with the app it just removed, so it must verify again; a fresh
    # verified session (with the passkey) then cannot remove the last factor.
    fresh = Client()
    login_password_only(fresh, patient)
    session = fresh.session
    session[DEVICE_ID_SESSION_KEY] = passkey.persistent_id
    session.save()
    reauthenticate(fresh)
    response = fresh.post(_remove_url(passkey))

    assert any("only way to sign in" in m for m in _messages(response))
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()


@pytest.mark.django_db
def test_another_users_passkey_is_404(patient_client, other_patient):
    theirs = _passkey(other_patient)
    reauthenticate(patient_client)

    assert patient_client.post(_remove_url(theirs)).status_code == 404
    assert patient_client.post(_rename_url(theirs), {"name": "x"}).status_code == 404
    assert WebAuthnCredential.objects.filter(pk=theirs.pk, name="Laptop passkey").exists()

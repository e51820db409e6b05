"""Password reset is never a way past the second factor (docs/security.md §1, 5)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from tests.conftest import login_verified
from tests.factories import PASSWORD

RESET_URL = "/accounts/password/reset/"
NEW_PASSWORD = "quiet lantern over 9 hills"
OTHER_PASSWORD = "seven copper kettles sing"


def _reset_link(email: str) -> str:
    messages = [m for m in mail.outbox if email in m.to]
    assert len(messages) == 1, [m.subject for m in mail.outbox]
    match = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+)", messages[0].body)
    assert match, messages[0].body
    return match.group(1)


def _request_reset(user: User) -> str:
    response = Client().post(RESET_URL, {"email": user.email})
    assert response.status_code == 302
    return _reset_link(user.email)


def _uid(link: str) -> str:
    return re.match(r"/accounts/password/reset/key/([^-]+)-", link).group(1)


def _complete_reset(client: Client, link: str, password: str = NEW_PASSWORD):
    landing = client.get(link)
    # allauth moves the key out of the URL (into the session) before showing the form.
    assert landing.status_code == 302, landing.content[:300]
    form_url = landing["Location"]
    assert form_url.endswith("-set-password/")
    return client.post(form_url, {"password1": password, "password2": password})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def reset_client() -> Client:
    return Client()


def test_reset_sets_the_new_password_without_signing_in(patient, reset_client):
    link = _request_reset(patient)

    response = _complete_reset(reset_client, link)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/key/done/"
    patient.refresh_from_db()
    assert patient.check_password(NEW_PASSWORD)
    assert not patient.check_password(PASSWORD)
    assert not _signed_in(reset_client)
    home = reset_client.get("/")
    assert home.status_code == 302
    assert home["Location"].startswith("/accounts/login/")


def test_sign_in_after_reset_still_needs_the_second_factor(patient, reset_client):
    _complete_reset(reset_client, _request_reset(patient))

    login = reset_client.post("/accounts/login/", {"login": patient.email, "password": NEW_PASSWORD})
    assert login.status_code == 302
    home = reset_client.get("/")

    assert home.status_code == 302
    assert home["Location"].startswith("/account/2fa/")
    assert not home["Location"].startswith("/account/2fa/setup/")  # verify, not a fresh enrolment
    assert patient.patient.name not in reset_client.get(home["Location"]).content.decode()


def test_reset_of_account_without_factor_leads_to_enrolment(officer, reset_client):
    officer.authenticatorapp_set.all().delete()
    _complete_reset(reset_client, _request_reset(officer))

    reset_client.post("/accounts/login/", {"login": officer.email, "password": NEW_PASSWORD})
    home = reset_client.get("/")

    assert home.status_code == 302
    assert home["Location"].startswith("/account/2fa/setup/")


def test_reset_link_cannot_be_reused(patient, reset_client):
    link = _request_reset(patient)
    _complete_reset(reset_client, link)

    again = Client()
    landing = again.get(link)
    assert landing.status_code == 200
    assert landing.context["token_fail"]
    # Even posting straight to the form URL does nothing without a valid key.
    set_url = f"/accounts/password/reset/key/{_uid(link)}-set-password/"
    posted = again.post(set_url, {"password1": OTHER_PASSWORD, "password2": OTHER_PASSWORD})
    assert posted.status_code == 200
    assert posted.context["token_fail"]
    # Nor does the first browser, which still has the key in its session.
    reused = reset_client.post(set_url, {"password1": OTHER_PASSWORD, "password2": OTHER_PASSWORD})
    assert reused.status_code == 200
    patient.refresh_from_db()
    assert patient.check_password(NEW_PASSWORD)
    assert not patient.check_password(OTHER_PASSWORD)


def test_reset_link_is_for_one_account_only(patient, other_patient, reset_client):
    link = _request_reset(patient)
    key = re.match(r"/accounts/password/reset/key/[^-]+-(.+)/$", link).group(1)
    other_uid = _uid(_request_reset(other_patient))

    forged = reset_client.get(f"/accounts/password/reset/key/{other_uid}-{key}/")

    assert forged.status_code == 200
    assert forged.context["token_fail"]
    other_patient.refresh_from_db()
    assert other_patient.check_password(PASSWORD)


def test_reset_signs_out_existing_sessions(patient, client, reset_client):
    login_verified(client, patient)
    assert client.get("/").status_code == 200

    _complete_reset(reset_client, _request_reset(patient))

    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_reset_rejects_a_weak_password(patient, reset_client):
    response = _complete_reset(reset_client, _request_reset(patient), password="12345678")

    assert response.status_code == 200
    assert response.context["form"].errors
    patient.refresh_from_db()
    assert patient.check_password(PASSWORD)

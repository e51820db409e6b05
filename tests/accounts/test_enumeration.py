"""Login, signup and password reset do not reveal whether an email has an account (docs/security.md §7)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client

from accounts.models import ActivationCode, User
from accounts.services import activation_code_issue
from imaging.models import Patient
from tests.factories import PASSWORD, PatientFactory, UserFactory

LOGIN_URL = "/accounts/login/"
RESET_URL = "/accounts/password/reset/"
SIGNUP_URL = "/accounts/signup/"
UNKNOWN = "nobody.here@example.net"
NEW_PASSWORD = "quiet lantern over 9 hills"


@pytest.fixture
def account(db) -> User:
    return UserFactory(email="known.person@example.net")


def _form_errors(response) -> list[str]:
    form = response.context["form"]
    return [str(e) for errors in form.errors.values() for e in errors]


def _visible(response, email: str) -> str:
    """The page text with the per-request bits (CSRF token, the typed email) taken out."""
    text = response.content.decode()
    text = text.replace(email, "EMAIL")
    for token in (response.context.get("csrf_token"),):
        if token:
            text = text.replace(str(token), "CSRF")
    return text


def _signup(client: Client, code: str, email: str):
    return client.post(
        SIGNUP_URL,
        {
            "activation_code": code,
            "birth_date": "1980-01-31",
            "email": email,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )


# --- login ---------------------------------------------------------------------------------------


def test_login_unknown_email_and_wrong_password_look_the_same(account):
    unknown = Client().post(LOGIN_URL, {"login": UNKNOWN, "password": "wrong password 123"})
    wrong = Client().post(LOGIN_URL, {"login": account.email, "password": "wrong password 123"})

    assert unknown.status_code == wrong.status_code == 200
    assert _form_errors(unknown) == _form_errors(wrong)
    assert _form_errors(unknown)  # there is an error, and it is the same one
    assert [t.name for t in unknown.templates] == [t.name for t in wrong.templates]
    assert not mail.outbox


def test_login_lockout_is_the_same_for_unknown_and_known_email(account):
    """The per-account limit on wrong passwords must not lock only real accounts (which would
    tell a guesser which emails exist)."""
    outcomes = {}
    for label, email, ip in (("unknown", UNKNOWN, "198.51.100.1"), ("known", account.email, "198.51.100.2")):
        client = Client(REMOTE_ADDR=ip)
        outcomes[label] = []
        for _ in range(7):
            response = client.post(LOGIN_URL, {"login": email, "password": "wrong password 123"})
            errors = _form_errors(response) if response.status_code == 200 else []
            outcomes[label].append((response.status_code, errors))

    assert outcomes["unknown"] == outcomes["known"]
    # The limit really kicks in within those attempts (otherwise this compares nothing).
    assert outcomes["known"][0] != outcomes["known"][-1]


def test_login_error_does_not_name_the_missing_account(account):
    response = Client().post(LOGIN_URL, {"login": UNKNOWN, "password": "wrong password 123"})

    text = " ".join(_form_errors(response)).lower()
    assert "does not exist" not in text
    assert "no account" not in text
    assert "not registered" not in text


def test_login_unverified_address_with_wrong_password_looks_like_unknown(db):
    """An account that exists but has not confirmed its email is no different to a guesser."""
    pending = UserFactory(email="pending@example.net", verified_email=False)
    unknown = Client().post(LOGIN_URL, {"login": UNKNOWN, "password": "wrong password 123"})
    wrong = Client().post(LOGIN_URL, {"login": pending.email, "password": "wrong password 123"})

    assert unknown.status_code == wrong.status_code == 200
    assert _form_errors(unknown) == _form_errors(wrong)
    assert not mail.outbox


# --- password reset ------------------------------------------------------------------------------


def test_password_reset_answers_the_same_for_known_and_unknown_email(account):
    known = Client().post(RESET_URL, {"email": account.email})
    unknown = Client().post(RESET_URL, {"email": UNKNOWN})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/accounts/password/reset/done/"
    done_known = Client().get(known["Location"])
    done_unknown = Client().get(unknown["Location"])
    assert done_known.status_code == done_unknown.status_code == 200


def test_password_reset_mails_a_link_only_to_the_known_account(account):
    Client().post(RESET_URL, {"email": account.email})
    Client().post(RESET_URL, {"email": UNKNOWN})

    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert "/accounts/password/reset/key/" in by_recipient[account.email].body
    # The unknown address hears that there is no account (or nothing); never a reset link.
    unknown = by_recipient.get(UNKNOWN)
    if unknown is not None:
        assert "/accounts/password/reset/key/" not in unknown.body
    assert len(mail.outbox) <= 2


def test_password_reset_same_answer_for_unverified_account(db):
    pending = UserFactory(email="pending@example.net", verified_email=False)
    known = Client().post(RESET_URL, {"email": pending.email})
    unknown = Client().post(RESET_URL, {"email": UNKNOWN})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]


def test_password_reset_invalid_address_is_rejected_alike(db):
    response = Client().post(RESET_URL, {"email": "not-an-email"})

    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert not mail.outbox


# --- signup --------------------------------------------------------------------------------------


def test_signup_with_existing_email_looks_like_a_fresh_signup(account):
    taken_record = PatientFactory(birth_date=dt.date(1980, 1, 31))
    fresh_record = PatientFactory(birth_date=dt.date(1980, 1, 31))
    taken_code = activation_code_issue(patient=taken_record)
    fresh_code = activation_code_issue(patient=fresh_record)

    existing = _signup(Client(), taken_code, account.email)
    fresh = _signup(Client(), fresh_code, "brand.new@example.net")

    assert existing.status_code == fresh.status_code == 302
    assert existing["Location"] == fresh["Location"] == "/accounts/confirm-email/"
    # No second account, no link to the record, and the code is still good for its owner.
    assert User.objects.filter(email__iexact=account.email).count() == 1
    taken_record.refresh_from_db()
    assert taken_record.user is None
    row = ActivationCode.objects.get(patient=taken_record, revoked_at__isnull=True)
    assert row.used_at is None and row.is_usable
    # Both addresses get a mail; the holder of the existing account is told, not signed up.
    recipients = sorted(m.to[0] for m in mail.outbox)
    assert recipients == sorted([account.email, "brand.new@example.net"])


def test_signup_with_existing_email_in_other_case_creates_nothing(account):
    record = PatientFactory(birth_date=dt.date(1980, 1, 31))
    code = activation_code_issue(patient=record)

    response = _signup(Client(), code, account.email.upper())

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert User.objects.filter(email__iexact=account.email).count() == 1
    record.refresh_from_db()
    assert record.user is None


def test_signup_with_unconfirmed_existing_email_creates_nothing(db):
    pending = UserFactory(email="pending@example.net", verified_email=False)
    record = PatientFactory(birth_date=dt.date(1980, 1, 31))
    code = activation_code_issue(patient=record)

    response = _signup(Client(), code, pending.email)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert User.objects.filter(email__iexact=pending.email).count() == 1
    record.refresh_from_db()
    assert record.user is None
    assert ActivationCode.objects.get(patient=record).is_usable


def test_verification_sent_pages_are_identical(account):
    taken_record: Patient = PatientFactory(birth_date=dt.date(1980, 1, 31))
    fresh_record: Patient = PatientFactory(birth_date=dt.date(1980, 1, 31))
    existing_client, fresh_client = Client(), Client()
    _signup(existing_client, activation_code_issue(patient=taken_record), account.email)
    _signup(fresh_client, activation_code_issue(patient=fresh_record), "brand.new@example.net")

    existing = existing_client.get("/accounts/confirm-email/")
    fresh = fresh_client.get("/accounts/confirm-email/")

    assert existing.status_code == fresh.status_code == 200
    assert [t.name for t in existing.templates] == [t.name for t in fresh.templates]
    assert _visible(existing, account.email) == _visible(fresh, "brand.new@example.net")


def test_signup_with_existing_email_and_wrong_code_gets_the_usual_error(account):
    fresh = _signup(Client(), "ABCD-EFGH-JKMN", "brand.new@example.net")
    existing = _signup(Client(), "ABCD-EFGH-JKMN", account.email)

    assert existing.status_code == fresh.status_code == 200
    assert existing.context["form"].errors == fresh.context["form"].errors
    assert not mail.outbox


def test_existing_email_signup_does_not_reveal_password_validity(account):
    """Signing up with a taken email and the account's own password changes nothing either."""
    record = PatientFactory(birth_date=dt.date(1980, 1, 31))
    code = activation_code_issue(patient=record)
    client = Client()
    response = client.post(
        SIGNUP_URL,
        {
            "activation_code": code,
            "birth_date": "1980-01-31",
            "email": account.email,
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session

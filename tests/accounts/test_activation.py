"""Patient signup with a hospital activation code (docs/security.md §1, 8, 10; DESIGN.md "Roles")."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.forms import ACTIVATION_MISMATCH
from accounts.models import ActivationCode, User
from accounts.services import activation_code_issue
from imaging.models import Patient
from tests.factories import PASSWORD, PatientFactory, UserFactory

SIGNUP_URL = "/accounts/signup/"
ENROL_URL = "/account/2fa/setup/"
NEW_PASSWORD = "quiet lantern over 9 hills"
BIRTH_DATE = dt.date(1980, 1, 31)
TOO_MANY = "Too many attempts"


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def new_patient(db) -> Patient:
    """A hospital record with no account yet (the factory's date of birth is 1980-01-31)."""
    return PatientFactory(birth_date=BIRTH_DATE)


@pytest.fixture
def code(new_patient) -> str:
    return activation_code_issue(patient=new_patient)


def signup_data(code: str, *, email: str = "new.patient@example.net", birth_date: str = "1980-01-31", **extra) -> dict:
    return {
        "activation_code": code,
        "birth_date": birth_date,
        "email": email,
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        **extra,
    }


def error_text(response) -> str:
    return response.content.decode()


def assert_mismatch(response) -> None:
    assert response.status_code == 200
    assert str(ACTIVATION_MISMATCH) in response.context["form"].errors.get("activation_code", [])


def code_row(patient: Patient) -> ActivationCode:
    return ActivationCode.objects.filter(patient=patient).order_by("-pk").first()


def assert_nothing_created(patient: Patient, email: str = "new.patient@example.net") -> None:
    patient.refresh_from_db()
    assert patient.user_id is None
    assert not User.objects.filter(email__iexact=email).exists()
    assert not mail.outbox


def link_in(message, path_prefix: str) -> str:
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s]+)", message.body)
    assert match, message.body
    return match.group(1)


def is_signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- successful signup --------------------------------------------------------------------------


def test_signup_form_asks_for_code_and_date_of_birth(client, db):
    response = client.get(SIGNUP_URL)
    assert response.status_code == 200
    form = response.context["form"]
    assert {"activation_code", "birth_date", "email", "password1", "password2"} <= set(form.fields)


def test_signup_links_account_to_patient_and_uses_up_code(client, new_patient, code):
    response = client.post(SIGNUP_URL, signup_data(code))

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="new.patient@example.net")
    new_patient.refresh_from_db()
    assert new_patient.user == user
    assert user.role == User.Role.PATIENT
    assert user.check_password(NEW_PASSWORD)
    row = code_row(new_patient)
    assert row.used_at is not None and row.used_by == user
    assert not row.is_usable
    # The address is not trusted until the link in the email is followed.
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.patient@example.net"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body


def test_signup_does_not_sign_in(client, new_patient, code):
    client.post(SIGNUP_URL, signup_data(code))

    assert not is_signed_in(client)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.lower(),
        lambda c: c.replace("-", ""),
        lambda c: " " + c.replace("-", " ") + " ",
        # Letters that look like digits: O for 0, I and L for 1.
        lambda c: c.replace("0", "O").replace("1", "I"),
        lambda c: c.replace("0", "o").replace("1", "l"),
    ],
    ids=["lower-case", "no-dashes", "spaces", "O-and-I-typos", "o-and-l-typos"],
)
def test_code_is_forgiving_about_how_it_is_typed(client, db, typed):
    patient = PatientFactory(birth_date=BIRTH_DATE)
    # Keep issuing until the code has a 0 or 1 in it, so the typo cases are exercised.
    code = activation_code_issue(patient=patient)
    while not ({"0", "1"} & set(code)):
        code = activation_code_issue(patient=patient)

    response = client.post(SIGNUP_URL, signup_data(typed(code)))

    assert response.status_code == 302, response.context["form"].errors
    patient.refresh_from_db()
    assert patient.user is not None


# --- refused codes ------------------------------------------------------------------------------


def test_wrong_date_of_birth_gets_the_same_vague_error_as_a_wrong_code(client, new_patient, code):
    wrong_date = client.post(SIGNUP_URL, signup_data(code, birth_date="1980-02-01"))
    wrong_code = client.post(SIGNUP_URL, signup_data("ABCD-EFGH-JKMN"))

    assert_mismatch(wrong_date)
    assert_mismatch(wrong_code)
    assert wrong_date.context["form"].errors == wrong_code.context["form"].errors
    assert_nothing_created(new_patient)
    assert code_row(new_patient).is_usable


def test_used_code_is_refused(client, new_patient, code):
    assert client.post(SIGNUP_URL, signup_data(code)).status_code == 302
    mail.outbox.clear()

    response = Client().post(SIGNUP_URL, signup_data(code, email="someone.else@example.net"))

    assert_mismatch(response)
    assert not User.objects.filter(email="someone.else@example.net").exists()
    assert not mail.outbox


def test_expired_code_is_refused(client, new_patient, code):
    ActivationCode.objects.filter(patient=new_patient).update(expires_at=timezone.now() - dt.timedelta(minutes=1))

    assert_mismatch(client.post(SIGNUP_URL, signup_data(code)))
    assert_nothing_created(new_patient)


def test_revoked_code_is_refused(client, new_patient, code):
    ActivationCode.objects.filter(patient=new_patient).update(revoked_at=timezone.now())

    assert_mismatch(client.post(SIGNUP_URL, signup_data(code)))
    assert_nothing_created(new_patient)


def test_code_replaced_by_a_newer_one_is_refused(client, new_patient, code):
    newer = activation_code_issue(patient=new_patient)

    assert_mismatch(client.post(SIGNUP_URL, signup_data(code)))
    assert_nothing_created(new_patient)
    assert client.post(SIGNUP_URL, signup_data(newer)).status_code == 302


def test_code_for_a_patient_who_already_has_an_account_is_refused(client, new_patient, code):
    new_patient.user = UserFactory()
    new_patient.save()

    assert_mismatch(client.post(SIGNUP_URL, signup_data(code)))
    assert not User.objects.filter(email="new.patient@example.net").exists()


def test_activation_guessing_is_rate_limited_per_ip(client, new_patient, code):
    amount = int(settings.ACCOUNT_RATE_LIMITS["activation"].split("/")[0])
    for _ in range(amount):
        assert_mismatch(client.post(SIGNUP_URL, signup_data("ABCD-EFGH-JKMN")))

    # Past the limit even the right code is refused, and it says why.
    response = client.post(SIGNUP_URL, signup_data(code))

    assert response.status_code == 200
    assert TOO_MANY in " ".join(response.context["form"].non_field_errors())
    assert TOO_MANY in error_text(response)
    assert_nothing_created(new_patient)
    assert code_row(new_patient).is_usable
    # The limit is per client IP: another address is not affected.
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.post(SIGNUP_URL, signup_data(code)).status_code == 302


def test_signup_ignores_fields_it_does_not_own(client, new_patient, code):
    """docs/security.md §10: no mass assignment of role, staff flags, patient or user."""
    other_record = PatientFactory()
    someone = UserFactory()
    response = client.post(
        SIGNUP_URL,
        signup_data(
            code,
            role=User.Role.ADMINISTRATOR,
            is_staff="1",
            is_superuser="1",
            is_active="0",
            patient=str(other_record.pk),
            user=str(someone.pk),
            used_by=str(someone.pk),
            id=str(someone.pk),
        ),
    )

    assert response.status_code == 302
    user = User.objects.get(email="new.patient@example.net")
    assert user.pk != someone.pk
    assert user.role == User.Role.PATIENT
    assert (user.is_staff, user.is_superuser, user.is_active) == (False, False, True)
    new_patient.refresh_from_db()
    other_record.refresh_from_db()
    assert new_patient.user == user
    assert other_record.user is None
    assert code_row(new_patient).used_by == user
    someone.refresh_from_db()
    assert someone.check_password(PASSWORD)


# --- after signup: confirm the email, then sign in -----------------------------------------------


def test_confirmed_patient_signing_in_lands_on_second_factor_enrolment(client, new_patient, code):
    client.post(SIGNUP_URL, signup_data(code))
    confirm_path = link_in(mail.outbox[0], "/accounts/confirm-email/")

    page = client.get(confirm_path)
    assert page.status_code == 200
    assert not EmailAddress.objects.get(email="new.patient@example.net").verified  # GET changes nothing
    confirmed = client.post(confirm_path)
    assert confirmed.status_code == 302
    assert EmailAddress.objects.get(email="new.patient@example.net").verified
    assert not is_signed_in(client)  # confirming the email is not a way in (docs/security.md §1)

    response = client.post(
        "/accounts/login/", {"login": "new.patient@example.net", "password": NEW_PASSWORD}, follow=True
    )

    assert response.status_code == 200
    assert response.request["PATH_INFO"] == ENROL_URL
    assert new_patient.name not in response.content.decode()
    assert not response.wsgi_request.user.is_verified()
    # And no patient page answers until the factor is enrolled.
    home = client.get("/")
    assert home.status_code == 302
    assert home["Location"].startswith(ENROL_URL)


def test_unconfirmed_patient_cannot_sign_in(client, new_patient, code):
    client.post(SIGNUP_URL, signup_data(code))
    mail.outbox.clear()

    response = client.post("/accounts/login/", {"login": "new.patient@example.net", "password": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert not is_signed_in(client)
    assert len(mail.outbox) == 1  # a fresh verification email

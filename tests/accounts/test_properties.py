"""Property-based tests of the account forms: activation signup, sign-in, the second-factor
code, authenticator enrolment and renaming a factor, with malformed input.

Properties: no input gets a server error; nothing but the right secret creates an account,
signs in, verifies a session or confirms a device, and a refusal says why; a right activation
code, however it is typed, with any valid email and password creates exactly one linked account.
"""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.account.models import EmailAddress
from django.contrib.messages import constants, get_messages
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from accounts.models import AuthenticatorApp, User
from accounts.services import activation_code_issue
from tests.conftest import login_password_only, reauthenticate
from tests.factories import PASSWORD, PatientFactory, UserFactory
from tests.hypothesis_profiles import example_scope, form_data, text

pytestmark = pytest.mark.django_db

SIGNUP_FIELDS = ["activation_code", "birth_date", "email", "password1", "password2"]
BIRTH_DATE = dt.date(1980, 1, 31)


def _refused_with_errors(response, body: dict) -> None:
    assert response.status_code in (200, 400, 429), response.status_code
    # An empty POST (no browser sends one: the CSRF token is a field) shows the blank form.
    if response.status_code != 429 and body:
        form = response.context["form"]
        assert form.errors, "refused without a reason"


@pytest.fixture
def code(db) -> str:
    return activation_code_issue(patient=PatientFactory(birth_date=BIRTH_DATE))


@given(body=form_data(SIGNUP_FIELDS), right_code=st.booleans())
@example(body={"activation_code": "\x00", "birth_date": "1980-01-31", "email": "a@b.co", "password1": "x", "password2": "x"}, right_code=False)
@example(body={"birth_date": "10000-01-01", "email": "a\x00@b.co"}, right_code=True)
def test_any_signup_is_refused_with_reasons(client, code, body, right_code):
    if right_code:
        body = {**body, "activation_code": code}  # the other fields (or their absence) must still be checked
    with example_scope():
        users = User.objects.count()
        response = client.post("/accounts/signup/", body)
        if response.status_code == 302:
            # Only possible with the right code, the birth date and a valid email and password pair.
            assert right_code and User.objects.count() == users + 1
            return
        assert User.objects.count() == users, "a refused signup created an account"
        _refused_with_errors(response, body)


local_part = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s)
typed_code = st.tuples(st.sampled_from(["", " ", "-"]), st.booleans())


# No lower-case letters or digits: never "too similar" to the generated address (a form error of its own).
password_tail = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Ll", "Nd")), max_size=40)


@given(local=local_part, password=password_tail,
       typing=typed_code)
def test_the_right_code_with_any_valid_email_and_password_creates_one_linked_account(client, code, local, password, typing):
    separator, lower = typing
    typed = code.replace("-", separator)
    typed = typed.lower() if lower else typed
    email = f"{local}@example.net"
    with example_scope():
        response = client.post("/accounts/signup/", {
            "activation_code": typed, "birth_date": BIRTH_DATE.isoformat(), "email": email,
            "password1": "Quartz-lantern " + password, "password2": "Quartz-lantern " + password,
        })
        assert response.status_code == 302, response.context["form"].errors if response.context else response.status_code
        user = User.objects.get(email=email)
        assert user.patient.birth_date == BIRTH_DATE and not EmailAddress.objects.get(user=user).verified


@given(body=form_data(["login", "password", "remember"]))
@example(body={"login": "a\x00@example.org", "password": PASSWORD})
def test_any_sign_in_attempt_is_refused_without_the_password(client, patient, body):
    with example_scope():
        response = client.post("/accounts/login/", body)
        assert "_auth_user_id" not in client.session
        _refused_with_errors(response, body)


@given(body=form_data(["code", "next"]))
@example(body={"code": "\x00" * 6})
@example(body={"code": "１２３４５６"})
def test_any_second_factor_code_is_refused(client, unverified_user, body):
    login_password_only(client, unverified_user)
    with example_scope():
        response = client.post("/account/2fa/", body)
        assert client.get("/").status_code == 302, "a random code verified the session"
        _refused_with_errors(response, body)


@given(body=form_data(["code", "name"]))
def test_any_enrolment_code_is_refused(client, body):
    user = UserFactory()
    login_password_only(client, user)
    with example_scope():
        response = client.post("/account/2fa/setup/", body)
        assert not AuthenticatorApp.objects.filter(user=user, confirmed=True).exists()
        _refused_with_errors(response, body)


@given(name=st.one_of(text(), st.lists(text(), min_size=2, max_size=2)))
@example(name="a\x00b")
@example(name="x" * 65)
def test_renaming_a_factor_accepts_a_name_or_says_why_not(patient_client, patient, name):
    device = patient.authenticatorapp_set.get()
    client: Client = patient_client
    if not getattr(client, "_reauthenticated", False):
        reauthenticate(client)
        client._reauthenticated = True  # once, outside the examples' rolled-back transactions
    with example_scope():
        client.cookies.pop("messages", None)
        response = client.post(f"/account/security/factors/{device.persistent_id}/rename/", {"name": name})
        assert response.status_code == 302
        device.refresh_from_db()
        levels = {m.level for m in get_messages(response.wsgi_request)}
        value = name[-1] if isinstance(name, list) else name
        if constants.SUCCESS in levels:
            assert device.name == value.strip() and 0 < len(device.name) <= 64
        else:
            assert constants.ERROR in levels and device.name == "Phone"

"""Management commands from DESIGN.md "Contracts": activation codes, privacy officers, the demo."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from django_otp import devices_for_user
from django_otp.oath import TOTP

from accounts.models import ActivationCode, AuthenticatorApp, RecoveryCode, RecoveryCodeSet, User
from accounts.services import normalize_activation_code
from core import crypto
from imaging.models import Patient
from portal import demo
from tests.factories import PatientFactory, UserFactory

CODE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
OFFICER_PASSWORD = "ledger of quiet audits 42"


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def _signup(client: Client, code: str, birth_date: dt.date, email: str = "new.patient@example.net"):
    password = "quiet lantern over 9 hills"
    return client.post(
        "/accounts/signup/",
        {
            "activation_code": code,
            "birth_date": birth_date.isoformat(),
            "email": email,
            "password1": password,
            "password2": password,
        },
    )


# --- issue_activation_code -----------------------------------------------------------------------


def test_issue_prints_a_grouped_code(db):
    patient = PatientFactory(mrn="MRN-100")

    code = run("issue_activation_code", "MRN-100").strip()

    assert CODE_RE.match(code), code
    row = ActivationCode.objects.get(patient=patient)
    assert row.is_usable
    assert row.used_at is None and row.revoked_at is None
    # ACTIVATION_CODE_TTL_DAYS from issue (allow for the time the command took).
    ttl = dt.timedelta(days=settings.ACTIVATION_CODE_TTL_DAYS)
    assert (
        row.created_at + ttl - dt.timedelta(seconds=5)
        <= row.expires_at
        <= row.created_at + ttl + dt.timedelta(seconds=5)
    )


def test_issued_code_works_for_signup(client, db):
    patient = PatientFactory(mrn="MRN-101")
    code = run("issue_activation_code", "MRN-101").strip()

    assert _signup(client, code, patient.birth_date).status_code == 302
    patient.refresh_from_db()
    assert patient.user.email == "new.patient@example.net"


def test_issue_stores_only_a_keyed_hash(db):
    patient = PatientFactory(mrn="MRN-102")
    code = run("issue_activation_code", "MRN-102").strip()
    bare = normalize_activation_code(code)

    row = ActivationCode.objects.get(patient=patient)
    assert row.code_hash == crypto.keyed_hash(bare, purpose="activation")
    # Not a plain (unkeyed) digest either: without the key outside the database it cannot be
    # brute-forced from a dump.
    assert row.code_hash not in {hashlib.sha256(v.encode()).hexdigest() for v in (code, bare)}
    # Nothing in any column, read the way a database dump would, holds the code.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ActivationCode._meta.db_table}")  # noqa: S608
        dump = " ".join(str(v) for r in cursor.fetchall() for v in r)
    for text in (code, bare, bare.lower(), code.lower()):
        assert text not in dump


def test_issue_makes_a_different_code_each_time(db):
    PatientFactory(mrn="MRN-103")
    codes = {run("issue_activation_code", "MRN-103").strip() for _ in range(5)}

    assert len(codes) == 5


def test_issue_unknown_mrn_is_a_clear_error(db):
    PatientFactory(mrn="MRN-104")

    with pytest.raises(CommandError, match="No patient with MRN NOPE-1"):
        run("issue_activation_code", "NOPE-1")
    assert not ActivationCode.objects.exists()


def test_issue_unknown_issuer_is_a_clear_error(db):
    PatientFactory(mrn="MRN-105", issuer="STEXAMPLE")

    with pytest.raises(CommandError, match="No patient with MRN MRN-105 and issuer OTHER"):
        run("issue_activation_code", "MRN-105", issuer="OTHER")


def test_issue_ambiguous_mrn_asks_for_issuer(db):
    PatientFactory(mrn="MRN-106", issuer="STEXAMPLE")
    wanted = PatientFactory(mrn="MRN-106", issuer="NORTHWING")

    with pytest.raises(CommandError, match="--issuer"):
        run("issue_activation_code", "MRN-106")
    assert not ActivationCode.objects.exists()

    code = run("issue_activation_code", "MRN-106", "--issuer", "NORTHWING").strip()

    assert CODE_RE.match(code)
    assert list(ActivationCode.objects.values_list("patient", flat=True)) == [wanted.pk]


def test_issue_refuses_a_patient_who_already_has_an_account(db):
    PatientFactory(mrn="MRN-107", user=UserFactory())

    with pytest.raises(CommandError, match="already has an account"):
        run("issue_activation_code", "MRN-107")
    assert not ActivationCode.objects.exists()


def test_issuing_again_revokes_the_unused_code(client, db):
    patient = PatientFactory(mrn="MRN-108")
    old = run("issue_activation_code", "MRN-108").strip()
    new = run("issue_activation_code", "MRN-108").strip()

    rows = {r.code_hash: r for r in ActivationCode.objects.filter(patient=patient)}
    old_row = rows[crypto.keyed_hash(normalize_activation_code(old), purpose="activation")]
    new_row = rows[crypto.keyed_hash(normalize_activation_code(new), purpose="activation")]
    assert old_row.revoked_at is not None and not old_row.is_usable
    assert new_row.is_usable
    assert ActivationCode.objects.filter(patient=patient, revoked_at__isnull=True).count() == 1
    # The old letter no longer works; the new one does.
    assert _signup(client, old, patient.birth_date).status_code == 200
    assert _signup(client, new, patient.birth_date).status_code == 302


def test_issuing_leaves_other_patients_codes_alone(db):
    PatientFactory(mrn="MRN-109")
    neighbour = PatientFactory(mrn="MRN-110")
    run("issue_activation_code", "MRN-110")
    run("issue_activation_code", "MRN-109")

    assert ActivationCode.objects.get(patient=neighbour).is_usable


# --- create_privacy_officer ----------------------------------------------------------------------


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "password.txt"
    path.write_text(OFFICER_PASSWORD + "\n")
    return path


def test_create_privacy_officer(db, password_file):
    output = run("create_privacy_officer", "Officer.Jones@Example.net", "--name", "Ola Jones", "--password-file", str(password_file))

    user = User.objects.get(email="officer.jones@example.net")
    assert "officer.jones@example.net" in output
    assert user.role == User.Role.PRIVACY_OFFICER
    assert user.is_privacy_officer
    assert not user.is_staff and not user.is_superuser
    assert user.check_password(OFFICER_PASSWORD)  # the file's trailing newline is not part of it
    address = EmailAddress.objects.get(user=user)
    assert address.email == "officer.jones@example.net"
    assert address.verified and address.primary
    # No second factor yet: nothing here can make a verified session.
    assert list(devices_for_user(user, confirmed=None)) == []


def test_password_file_saved_with_windows_line_ending(client, db, tmp_path):
    path = tmp_path / "password.txt"
    path.write_bytes(OFFICER_PASSWORD.encode() + b"\r\n")

    run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones", "--password-file", str(path))

    assert User.objects.get(email="officer.jones@example.net").check_password(OFFICER_PASSWORD)


def test_password_file_keeps_inner_spaces(db, tmp_path):
    path = tmp_path / "password.txt"
    path.write_text(" " + OFFICER_PASSWORD + " \n")

    run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones", "--password-file", str(path))

    assert User.objects.get(email="officer.jones@example.net").check_password(" " + OFFICER_PASSWORD + " ")


def test_new_officer_signing_in_is_sent_to_enrolment(client, db, password_file):
    run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones", "--password-file", str(password_file))

    response = client.post(
        "/accounts/login/", {"login": "officer.jones@example.net", "password": OFFICER_PASSWORD}, follow=True
    )

    assert response.status_code == 200
    assert response.request["PATH_INFO"] == "/account/2fa/setup/"
    assert not response.wsgi_request.user.is_verified()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "too short"),
        ("password123", "too common"),
        ("48151623424815", "entirely numeric"),
        ("officer.jones@example.net", "too similar"),
    ],
)
def test_create_privacy_officer_rejects_a_weak_password(db, tmp_path, password, message):
    path = tmp_path / "password.txt"
    path.write_text(password)

    with pytest.raises(CommandError, match=message):
        run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones", "--password-file", str(path))
    assert not User.objects.exists()
    assert not EmailAddress.objects.exists()


def test_create_privacy_officer_duplicate_email(db, password_file):
    existing = UserFactory(email="taken@example.net")

    with pytest.raises(CommandError, match="already exists"):
        run("create_privacy_officer", "TAKEN@example.net", "--name", "Ola Jones", "--password-file", str(password_file))
    existing.refresh_from_db()
    assert existing.role == User.Role.PATIENT
    assert User.objects.count() == 1


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
def test_create_privacy_officer_unreadable_password_file(db, tmp_path, kind):
    path = tmp_path / "password.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")

    with pytest.raises(CommandError, match="password.txt"):
        run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones", "--password-file", str(path))
    assert not User.objects.exists()


def test_create_privacy_officer_rejects_an_invalid_email(db, password_file):
    with pytest.raises(CommandError):
        run("create_privacy_officer", "not an email", "--name", "Ola Jones", "--password-file", str(password_file))
    assert not User.objects.exists()


def test_create_privacy_officer_prompt_must_match(db, monkeypatch):
    answers = iter([OFFICER_PASSWORD, OFFICER_PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    with pytest.raises(CommandError, match="do not match"):
        run("create_privacy_officer", "officer.jones@example.net", "--name", "Ola Jones")
    assert not User.objects.exists()


# --- make_demo_data and demo_code ----------------------------------------------------------------


def _snapshot() -> dict:
    return {
        "users": sorted(User.objects.values_list("pk", "email", "role")),
        "patients": sorted(Patient.objects.values_list("pk", "issuer", "mrn", "user")),
        "emails": sorted(EmailAddress.objects.values_list("pk", "user", "email", "verified")),
        "apps": sorted(AuthenticatorApp.objects.values_list("pk", "user", "confirmed")),
        "recovery_sets": sorted(RecoveryCodeSet.objects.values_list("pk", "user")),
    }


def _printed_activation_code(output: str) -> str | None:
    match = re.search(r"activation code (\S+)", output)
    return match.group(1) if match else None


def test_make_demo_data_creates_the_demo_accounts(db):
    output = run("make_demo_data")

    patient_user = User.objects.get(email=demo.PATIENT["email"])
    assert patient_user.role == User.Role.PATIENT
    assert patient_user.patient.mrn == demo.PATIENT["mrn"]
    assert User.objects.get(email=demo.OFFICER_EMAIL).role == User.Role.PRIVACY_OFFICER
    admin = User.objects.get(email=demo.ADMIN_EMAIL)
    assert admin.role == User.Role.ADMINISTRATOR and admin.is_superuser
    for user in User.objects.all():
        assert user.check_password(demo.DEMO_PASSWORD)
        assert EmailAddress.objects.get(user=user).verified
        assert AuthenticatorApp.objects.get(user=user).confirmed
        assert RecoveryCode.objects.filter(device__user=user).count() == settings.RECOVERY_CODE_COUNT
    unactivated = Patient.objects.get(mrn=demo.UNACTIVATED["mrn"])
    assert unactivated.user is None
    assert CODE_RE.match(_printed_activation_code(output))


def test_make_demo_data_is_idempotent(db):
    first_output = run("make_demo_data")
    first = _snapshot()

    second_output = run("make_demo_data")

    assert _snapshot() == first
    # Every start prints working recovery codes (new ones: only hashes are stored), issue 19
    # item 14; tests/portal/test_run.py checks that they work.
    assert "recovery codes for" in first_output
    assert "recovery codes for" in second_output
    # The sign-up example always prints a code that works, and only one code is usable.
    unactivated = Patient.objects.get(mrn=demo.UNACTIVATED["mrn"])
    usable = [r for r in ActivationCode.objects.filter(patient=unactivated) if r.is_usable]
    assert len(usable) == 1
    code = _printed_activation_code(second_output)
    assert usable[0].code_hash == crypto.keyed_hash(normalize_activation_code(code), purpose="activation")


def test_make_demo_data_signup_example_works(client, db):
    code = _printed_activation_code(run("make_demo_data"))

    response = _signup(client, code, demo.UNACTIVATED["birth_date"], email="sam@example.net")

    assert response.status_code == 302
    assert Patient.objects.get(mrn=demo.UNACTIVATED["mrn"]).user.email == "sam@example.net"
    # Once the demo signup is used, a rerun leaves that account alone and prints no code.
    before = _snapshot()
    assert _printed_activation_code(run("make_demo_data")) is None
    assert _snapshot() == before


def test_demo_patient_signing_in_is_asked_for_the_code_not_enrolment(client, db):
    run("make_demo_data")

    client.post("/accounts/login/", {"login": demo.PATIENT["email"], "password": demo.DEMO_PASSWORD})
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa/?")


@override_settings(PRODUCTION=True)
def test_make_demo_data_refuses_in_production(db):
    with pytest.raises(CommandError, match="production"):
        run("make_demo_data")
    assert not User.objects.exists()
    assert not Patient.objects.exists()


def _demo_token(at: float) -> str:
    totp = TOTP(demo.DEMO_TOTP_KEY)
    totp.time = at
    return f"{totp.token():06d}"


def test_demo_code_prints_the_current_code_of_the_demo_secret(db):
    run("make_demo_data")
    before = time.time()
    output = run("demo_code")
    after = time.time()

    code = output.split()[0]
    assert re.fullmatch(r"\d{6}", code), output
    # The command ran between ``before`` and ``after``: its code is the one for either moment.
    assert code in {_demo_token(before), _demo_token(after)}
    device = AuthenticatorApp.objects.get(user__email=demo.PATIENT["email"])
    assert device.verify_token(code)


@override_settings(PRODUCTION=True)
def test_demo_code_refuses_in_production(db):
    with pytest.raises(CommandError):
        run("demo_code")


def test_activation_code_is_not_usable_after_expiry(db):
    """The row's own rule (used by signup): an expired code is not usable even if never used."""
    patient = PatientFactory(mrn="MRN-111")
    run("issue_activation_code", "MRN-111")
    row = ActivationCode.objects.get(patient=patient)
    row.expires_at = timezone.now() - dt.timedelta(seconds=1)

    assert not row.is_usable

"""``manage.py relink_patient``: moves a record to another patient account with a reason on the
patient's log; the previous account is signed out everywhere and reaches nothing of the record;
every bad input is a clear error and changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from allauth.usersessions.models import UserSession
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import AccessEvent
from imaging.models import Patient
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory
from tests.flags.conftest import make_study

pytestmark = pytest.mark.django_db

REASON = "Ticket 4411: activation code handed to the wrong person"


def run(*args: str) -> str:
    out = StringIO()
    call_command("relink_patient", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def new_account() -> User:
    user = UserFactory(email="right.person@example.net")
    AuthenticatorAppFactory(user=user)
    return user


def test_the_record_moves_and_the_old_account_is_signed_out_at_once(patient, new_account, django_capture_on_commit_callbacks):
    record = patient.patient
    study = make_study(record)
    url = reverse("imaging-study", args=[study.pk])
    old_browser = login_verified(Client(), patient)
    assert old_browser.get(url).status_code == 200
    assert UserSession.objects.filter(user=patient).exists()

    with django_capture_on_commit_callbacks(execute=True):  # the sessions end once the move is committed
        output = run(record.mrn, "--to-email", "Right.Person@example.net", "--reason", REASON)

    assert f"now belongs to right.person@example.net (was {patient.email}, now signed out)" in output
    assert Patient.objects.get(pk=record.pk).user_id == new_account.pk
    assert not UserSession.objects.filter(user=patient).exists()
    response = old_browser.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    # Signed in again, the old account finds no such study; the new one opens it.
    assert login_verified(Client(), patient).get(url).status_code == 404
    assert login_verified(Client(), new_account).get(url).status_code == 200
    event = AccessEvent.objects.filter(patient=record, action="modify").get()
    assert event.details["reason"] == REASON and event.actor_name == "Account re-link"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NO-SUCH-MRN", "--to-email", "right.person@example.net", "--reason", REASON], "No patient with MRN NO-SUCH-MRN."),
        (["{mrn}", "--issuer", "OTHER", "--to-email", "right.person@example.net", "--reason", REASON],
         "No patient with MRN {mrn} and issuer OTHER."),
        (["DUP-1", "--to-email", "right.person@example.net", "--reason", REASON], "exists under several issuers; pass --issuer"),
        (["{mrn}", "--to-email", "nobody@example.net", "--reason", REASON], "No account with the email nobody@example.net."),
        (["{mrn}", "--to-email", "right.person@example.net", "--reason", "fix"], "Give the reason (at least 10 characters)"),
        (["{mrn}", "--to-email", "{officer}", "--reason", REASON], "must be an active patient account"),
        (["{mrn}", "--to-email", "{own}", "--reason", REASON], "already belongs to that account"),
        (["{mrn}", "--to-email", "{other}", "--reason", REASON], "already holds another patient record"),
        (["{mrn}", "--to-email", "right.person@example.net"], "the following arguments are required: --reason"),
        (["{mrn}", "--reason", REASON], "the following arguments are required: --to-email"),
    ],
)
def test_every_bad_input_is_a_clear_error_and_changes_nothing(
    patient, other_patient, officer, new_account, args, message, django_capture_on_commit_callbacks
):
    PatientFactory(issuer="A", mrn="DUP-1")
    PatientFactory(issuer="B", mrn="DUP-1")
    values = {"mrn": patient.patient.mrn, "officer": officer.email, "own": patient.email, "other": other_patient.email}
    assert login_verified(Client(), patient).get(reverse("home")).status_code == 200
    links = dict(Patient.objects.values_list("pk", "user_id"))
    events = AccessEvent.objects.count()
    with pytest.raises(CommandError) as exc, django_capture_on_commit_callbacks(execute=True):
        run(*(a.format(**values) for a in args))
    assert message.format(**values) in str(exc.value)
    assert dict(Patient.objects.values_list("pk", "user_id")) == links
    assert AccessEvent.objects.count() == events
    assert UserSession.objects.filter(user=patient).exists()  # no one was signed out

"""Moving a patient record to another account is a service with a reason, on the patient's log
(imaging.services.patients.patient_account_relink), never an admin field: who may, what is
refused (nothing changed), and the event the patient sees."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent
from core.actor import Actor
from core.models import ServiceAccount
from imaging.models import Patient
from imaging.services.patients import patient_account_relink
from tests.factories import PatientFactory, UserFactory, actor_of

pytestmark = pytest.mark.django_db

REASON = "Ticket 4411: activation code handed to the wrong person"


@pytest.fixture
def new_account() -> User:
    return UserFactory()


def test_a_command_moves_the_record_and_the_patient_sees_why(patient, new_account):
    record = patient.patient
    before = AccessEvent.objects.filter(patient=record).count()
    previous = patient_account_relink(actor=Actor.system("Account re-link"), patient=record, user=new_account, reason=REASON)
    assert previous == patient.pk
    assert Patient.objects.get(pk=record.pk).user_id == new_account.pk
    event = AccessEvent.objects.filter(patient=record).order_by("-pk").first()
    assert AccessEvent.objects.filter(patient=record).count() == before + 1
    assert (event.action, event.purpose, event.actor_type, event.actor_name) == ("modify", "operations", "system", "Account re-link")
    assert event.details == {"change": "account_relink", "reason": REASON, "from_account": patient.pk, "to_account": new_account.pk}
    # The old account reaches nothing at once; the new one reaches the record.
    assert actor_of(patient).patient_ids == frozenset()
    assert actor_of(new_account).patient_ids == frozenset({record.pk})


def test_an_officer_needs_a_fresh_password_and_is_named(patient, officer, new_account):
    officer.display_name = "Jane Okafor"
    officer.save()
    record = patient.patient
    stale = actor_of(officer, reauthenticated=False)
    with pytest.raises(ReauthenticationRequired):
        patient_account_relink(actor=stale, patient=record, user=new_account, reason=REASON)
    old = dataclasses.replace(actor_of(officer), reauthenticated_at=timezone.now() - dt.timedelta(minutes=10))
    with pytest.raises(ReauthenticationRequired):
        patient_account_relink(actor=old, patient=record, user=new_account, reason=REASON)
    assert Patient.objects.get(pk=record.pk).user_id == patient.pk
    patient_account_relink(actor=actor_of(officer), patient=record, user=new_account, reason=REASON)
    event = AccessEvent.objects.filter(patient=record).order_by("-pk").first()
    assert (event.actor_name, event.actor_ref, event.action) == ("Jane Okafor", f"user:{officer.pk}", "modify")


@pytest.mark.parametrize("who", ["administrator", "patient", "service", "anonymous"])
def test_no_one_else_may(patient, new_account, who):
    admin_user = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    actor = {
        "administrator": lambda: actor_of(admin_user),
        "patient": lambda: actor_of(patient),
        "service": lambda: Actor.for_service(ServiceAccount(pk=7, name="ehr", organization="EHR", scopes=["audit:write"])),
        "anonymous": lambda: Actor.anonymous(),
    }[who]()
    events = AccessEvent.objects.count()
    with pytest.raises(PermissionDenied):
        patient_account_relink(actor=actor, patient=patient.patient, user=new_account, reason=REASON)
    assert Patient.objects.get(pk=patient.patient.pk).user_id == patient.pk
    assert AccessEvent.objects.count() == events


def test_bad_requests_change_nothing(patient, other_patient, officer, new_account):
    system = Actor.system("Account re-link")
    record = patient.patient
    inactive = UserFactory(is_active=False)
    cases = [
        (new_account, ""),
        (new_account, "   fix    "),  # too short once spaces are folded
        (officer, REASON),  # not a patient account
        (inactive, REASON),
        (patient, REASON),  # already this record's account
        (other_patient, REASON),  # holds another record
    ]
    events = AccessEvent.objects.count()
    for user, reason in cases:
        with pytest.raises(ValidationError):
            patient_account_relink(actor=system, patient=record, user=user, reason=reason)
    assert Patient.objects.get(pk=record.pk).user_id == patient.pk
    assert Patient.objects.get(pk=other_patient.patient.pk).user_id == other_patient.pk
    assert AccessEvent.objects.count() == events


def test_a_record_without_an_account_can_be_linked_with_a_reason(new_account):
    record = PatientFactory(user=None)
    assert patient_account_relink(actor=Actor.system("Account re-link"), patient=record, user=new_account, reason=REASON) is None
    assert Patient.objects.get(pk=record.pk).user_id == new_account.pk

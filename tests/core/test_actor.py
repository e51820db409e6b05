"""The Actor and its one rule, ``for_actor``: who reaches whose records, and the service-side
password check (core/actor.py, core/querysets.py, core/access_log.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AccessEvent
from core import access_log
from core.actor import Actor, Kind
from flags.models import Flag
from imaging.models import Patient, Study
from tests.factories import UserFactory, actor_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies(patient, other_patient):
    return {
        user: Study.objects.create(patient=user.patient, study_uid=f"1.2.826.0.1.{user.pk}")
        for user in (patient, other_patient)
    }


def test_a_patient_reaches_only_their_own_record(patient, other_patient, studies):
    actor = actor_of(patient)
    assert actor.kind == Kind.PATIENT and actor.patient_id == patient.patient.pk
    assert list(Study.objects.for_actor(actor)) == [studies[patient]]
    assert list(Patient.objects.for_actor(actor)) == [patient.patient]
    assert not actor.may_reach(other_patient.patient.pk)


def test_an_officer_reaches_no_record_until_investigating_one(officer, patient, other_patient, studies):
    actor = actor_of(officer)
    assert actor.kind == Kind.PRIVACY_OFFICER and actor.patient_id is None
    assert not Study.objects.for_actor(actor).exists()
    narrowed = actor.investigating(patient.patient.pk)
    assert list(Study.objects.for_actor(narrowed)) == [studies[patient]]
    # Investigating is the officer's alone, and it narrows: it never widens to other patients.
    assert not narrowed.may_reach(other_patient.patient.pk)
    with pytest.raises(PermissionDenied):
        actor_of(patient).investigating(other_patient.patient.pk)


def test_the_officer_queue_lists_every_flag_and_a_patient_only_their_own(officer, patient, other_patient, studies):
    due = timezone.now() + dt.timedelta(days=30)
    mine = Flag.objects.create(patient=patient.patient, study=studies[patient], category="other", description="x", due_at=due)
    Flag.objects.create(patient=other_patient.patient, study=studies[other_patient], category="other", description="y", due_at=due)
    assert Flag.objects.for_actor(actor_of(officer)).count() == 2
    assert list(Flag.objects.for_actor(actor_of(patient))) == [mine]


def test_an_administrator_anonymous_and_patientless_user_reach_nothing(studies):
    admin = UserFactory(role="administrator", is_staff=True)
    patientless = UserFactory()
    for actor in (actor_of(admin), actor_of(patientless), Actor.anonymous()):
        assert not Study.objects.for_actor(actor).exists()
        assert not AccessEvent.objects.for_actor(actor).exists()


def test_a_system_actor_reaches_every_record_and_names_itself(studies):
    actor = Actor.system("Lightbox import")
    assert Study.objects.for_actor(actor).count() == 2
    assert actor.ref == "system:Lightbox import"


def test_the_access_log_port_refuses_an_access_the_rule_does_not_allow(patient, other_patient, officer, studies):
    with pytest.raises(PermissionDenied):
        access_log.record(actor=actor_of(patient), patient=other_patient.patient, action="view")
    with pytest.raises(PermissionDenied):
        access_log.record(actor=actor_of(officer), patient=patient.patient, action="view")
    assert not AccessEvent.objects.exists()
    event = access_log.record(actor=actor_of(officer).investigating(patient.patient.pk), patient=patient.patient, action="view")
    assert (event.actor_type, event.actor_name, event.purpose) == ("privacy_office", officer.public_name, "privacy_investigation")


def test_a_persons_sensitive_action_needs_a_recent_password(patient, settings):
    now = timezone.now()
    timeout = dt.timedelta(seconds=settings.ACCOUNT_REAUTHENTICATION_TIMEOUT)
    actor_of(patient).require_recent_reauthentication()
    for stale in (actor_of(patient, reauthenticated=False),
                  Actor(kind=Kind.PATIENT, name="p", reauthenticated_at=now - timeout)):
        with pytest.raises(ReauthenticationRequired):
            stale.require_recent_reauthentication(now=now)
    # Commands, tasks and API tokens have no password to re-enter.
    Actor.system("export_studies").require_recent_reauthentication()

"""The audited reads of the consent pages (``consent.reads``), the services on the Actor, and
the selectors under them.

Each read writes exactly one access event and none when it answers 404; another patient's
receipt or decision is a 404 from the selector, the read and the view; an officer who is not
investigating reaches nothing (docs/security.md §9, §13).
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from audit.models import AccessEvent
from consent import reads
from consent.models import ConsentDecision
from consent.selectors import decision_get, decision_list
from consent.services import _write_decision, consent_decision_record, consent_decision_record_for_patient
from tests.conftest import login_verified, reauthenticate
from tests.consent.conftest import make_study
from tests.factories import actor_of

pytestmark = pytest.mark.django_db


def decide(record, policy, scope="research", decision="granted") -> ConsentDecision:
    """A decision written without an access event, so the counts below are the reads' alone."""
    return _write_decision(patient=record, scope=scope, decision=decision, study=None, policy=policy,
                           actor=record.user, channel="portal", kind="change", recorded_by="patient")


READS = {
    "history": lambda actor, receipt_id: reads.consent_history_open(actor=actor),
    "receipt": lambda actor, receipt_id: reads.consent_receipt_open(actor=actor, receipt_id=receipt_id),
    "receipt_json": lambda actor, receipt_id: reads.consent_receipt_download(actor=actor, receipt_id=receipt_id),
    "partners": lambda actor, receipt_id: reads.consent_partners_open(actor=actor),
}


def expected(name: str, receipt_id) -> tuple[str, dict]:
    return {
        "history": ("view", {"page": "consent_history"}),
        "receipt": ("view", {"page": "consent_receipt", "receipt_id": str(receipt_id)}),
        "receipt_json": ("download", {"page": "consent_receipt_json", "receipt_id": str(receipt_id)}),
        "partners": ("view", {"page": "consent_partners"}),
    }[name]


def urls(receipt_id) -> dict[str, str]:
    return {
        "history": "/consent/history/",
        "receipt": f"/consent/receipts/{receipt_id}/",
        "receipt_json": f"/consent/receipts/{receipt_id}/receipt.json",
        "partners": "/consent/partners/",
    }


# --- (a) exactly one event per read, none on a 404 ----------------------------------------------


@pytest.mark.parametrize("name", READS)
def test_each_audited_read_records_exactly_one_event(patient, policy, name):
    decision = decide(patient.patient, policy)

    READS[name](actor_of(patient), decision.receipt_id)

    event = AccessEvent.objects.get()
    assert event.patient == patient.patient
    assert (event.actor_type, event.actor_name, event.actor_ref, event.purpose, event.source) == (
        "patient", "Patient (self)", f"user:{patient.pk}", "patient_request", "portal"
    )
    assert (event.action, event.details) == expected(name, decision.receipt_id)


@pytest.mark.parametrize("name", ["receipt", "receipt_json"])
def test_a_missing_receipt_is_404_and_records_nothing(patient, policy, name):
    with pytest.raises(Http404):
        READS[name](actor_of(patient), "00000000-0000-0000-0000-000000000001")
    assert not AccessEvent.objects.exists()


# --- (b) another patient's receipt or decision -------------------------------------------------


def test_another_patients_decision_is_404_from_the_selector(patient, other_patient, policy):
    mine = decide(patient.patient, policy)
    theirs = decide(other_patient.patient, policy)
    actor = actor_of(patient)

    assert list(decision_list(actor=actor)) == [mine]
    assert decision_get(actor=actor, receipt_id=mine.receipt_id) == mine
    with pytest.raises(Http404):
        decision_get(actor=actor, receipt_id=theirs.receipt_id)


@pytest.mark.parametrize("name", ["receipt", "receipt_json"])
def test_another_patients_receipt_is_404_from_the_read_and_the_view_recording_nothing(
    client, patient, other_patient, policy, name
):
    theirs = decide(other_patient.patient, policy)

    with pytest.raises(Http404):
        READS[name](actor_of(patient), theirs.receipt_id)
    login_verified(client, patient)
    assert client.get(urls(theirs.receipt_id)[name]).status_code == 404

    assert not AccessEvent.objects.exists()


def test_another_patients_history_is_never_shown(client, patient, other_patient, policy):
    decide(other_patient.patient, policy)

    assert reads.consent_history_open(actor=actor_of(patient)) == []
    login_verified(client, patient)
    assert "/consent/receipts/" not in client.get("/consent/history/").content.decode()
    # Each look went into the patient's own log only.
    assert not AccessEvent.objects.filter(patient=other_patient.patient).exists()


# --- (c) an officer who is not investigating ---------------------------------------------------


@pytest.mark.parametrize("name", READS)
def test_an_officer_not_investigating_gets_404_from_the_read_and_the_view(client, officer, patient, policy, name):
    decision = decide(patient.patient, policy)
    actor = actor_of(officer)

    assert not decision_list(actor=actor).exists()
    with pytest.raises(Http404):
        READS[name](actor, decision.receipt_id)
    login_verified(client, officer)
    assert client.get(urls(decision.receipt_id)[name]).status_code == 404

    assert not AccessEvent.objects.exists()


def test_an_officer_gets_404_on_the_change_page(client, officer, policy):
    login_verified(client, officer)
    reauthenticate(client)
    assert client.get("/consent/change/research/").status_code == 404
    assert client.post("/consent/change/research/", {"decision": "granted"}).status_code == 404
    assert not ConsentDecision.objects.exists()


# --- The services on the Actor --------------------------------------------------------------------


def test_only_a_patient_changes_their_own_consent(officer, policy):
    with pytest.raises(PermissionDenied):
        consent_decision_record(actor=actor_of(officer), scope="research", decision="granted")
    assert not ConsentDecision.objects.exists() and not AccessEvent.objects.exists()


def test_a_change_for_another_patients_study_is_404_and_writes_nothing(patient, other_study, policy):
    with pytest.raises(Http404):
        consent_decision_record(actor=actor_of(patient), scope="research", decision="refused", study_id=other_study.pk)
    assert not ConsentDecision.objects.exists() and not AccessEvent.objects.exists()


def test_a_patients_change_names_their_account_on_the_decision(patient, policy, studies):
    row = consent_decision_record(actor=actor_of(patient), scope="research", decision="refused", study_id=studies[1].pk)

    assert (row.actor, row.study, row.channel, row.kind) == (patient, studies[1], "portal", "change")
    event = AccessEvent.objects.get()
    assert (event.actor_type, event.actor_ref, event.action, event.purpose, event.study) == (
        "patient", f"user:{patient.pk}", "modify", "patient_request", studies[1]
    )


def test_the_paper_form_narrows_the_officer_to_the_patient(officer, patient, other_patient, policy, studies):
    """The officer reaches no record until the form names one; then exactly that one."""
    record = patient.patient
    actor = actor_of(officer)
    row = consent_decision_record_for_patient(
        actor=actor, patient=record, scope="teaching", decision="refused", channel="paper", study_id=studies[0].pk,
        note="Form 12",
    )

    assert (row.actor, row.patient, row.study, row.channel) == (officer, record, studies[0], "paper")
    event = AccessEvent.objects.get()
    assert (event.patient, event.actor_type, event.actor_name, event.actor_ref, event.role, event.purpose) == (
        record, "privacy_office", officer.public_name, f"user:{officer.pk}", "Privacy officer", "patient_request"
    )
    # A study of another patient is outside the narrowed reach: 404, nothing written.
    theirs = make_study(other_patient.patient)
    with pytest.raises(Http404):
        consent_decision_record_for_patient(
            actor=actor, patient=record, scope="teaching", decision="granted", channel="phone", study_id=theirs.pk,
        )
    assert ConsentDecision.objects.count() == 1 and AccessEvent.objects.count() == 1


def test_only_an_officer_records_a_paper_decision(patient, other_patient, policy):
    with pytest.raises(PermissionDenied):
        consent_decision_record_for_patient(
            actor=actor_of(other_patient), patient=patient.patient, scope="teaching", decision="refused", channel="paper",
        )
    assert not ConsentDecision.objects.exists() and not AccessEvent.objects.exists()

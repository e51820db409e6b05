"""Emails about new organisations, AI/research use, emergency access and downloads."""

from __future__ import annotations

import pytest
from django.core import mail

from audit.models import NotificationPreference, NotificationSent
from audit.notifications import kinds_of, notify_events
from tests.audit.conftest import clinician_view
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def record(patient):
    return patient.patient


def test_kinds(record):
    first = clinician_view(record, organization="Mercy Hospital")
    again = clinician_view(record, organization="Mercy Hospital")
    ai = clinician_view(record, organization="Mercy Hospital", actor_type="ai_vendor", purpose="ai_inference")
    er = clinician_view(record, organization="Mercy Hospital", purpose="emergency", action="download")
    assert kinds_of(first) == ["new_organization"]
    assert kinds_of(again) == []
    assert kinds_of(ai) == ["ai_or_research"]
    assert kinds_of(er) == ["emergency", "downloads"]


def test_defaults_email_new_organisation_once_without_clinical_detail(patient, record):
    record.studies.create(study_uid="1.2.3.99", description="MR brain tumour follow-up")
    study = record.studies.get()
    event = clinician_view(record, organization="Oncology Partners", actor_name="Dr Roe", study=study)
    assert notify_events([event.pk]) == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [patient.email]
    text = message.body + message.alternatives[0][0] + message.subject
    assert "an organisation that had not accessed your scans before" in text
    for secret in ("Oncology", "Dr Roe", "MR brain", "tumour", record.name, record.mrn):
        assert secret not in text
    assert "/access-log/" in text
    # Idempotent: a retried task sends nothing more.
    assert notify_events([event.pk]) == 0
    assert len(mail.outbox) == 1


def test_preferences_are_respected(patient, record):
    NotificationPreference.objects.create(user=patient, new_organization=False, ai_or_research=False, emergency=True)
    quiet = clinician_view(record, organization="New Org", actor_type="researcher", purpose="research")
    loud = clinician_view(record, organization="New Org", purpose="emergency")
    assert notify_events([quiet.pk]) == 0
    assert notify_events([loud.pk]) == 1
    assert "an emergency access" in mail.outbox[0].body


def test_one_email_per_patient_per_batch(patient, record, other_patient):
    events = [clinician_view(record, organization=f"Org {i}") for i in range(3)]
    events.append(clinician_view(other_patient.patient, organization="Org X"))
    assert notify_events([e.pk for e in events]) == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([patient.email, other_patient.email])


def test_portal_events_never_notify(patient, record):
    from core import access_log
    from tests.factories import actor_of

    event = access_log.record(actor=actor_of(patient), patient=record, action="download")
    assert notify_events([event.pk]) == 0
    assert not mail.outbox


def test_patients_without_an_account_are_skipped(db):
    from tests.factories import PatientFactory

    event = clinician_view(PatientFactory(), organization="Mercy")
    assert notify_events([event.pk]) == 0


def test_api_enqueues_on_commit(client, patient, record, django_capture_on_commit_callbacks):
    import datetime as dt
    import json

    from django.utils import timezone

    from accounts.services import service_account_create

    _account, token = service_account_create(name="ehr", organization="Mercy", scopes=["audit:write"])
    body = {"events": [{"source_event_id": "1", "occurred_at": (timezone.now() - dt.timedelta(minutes=5)).isoformat(),
                        "patient": {"issuer": record.issuer, "mrn": record.mrn}, "purpose": "treatment", "action": "view"}]}
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/api/v1/audit/events", json.dumps(body), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.json()["accepted"] == 1
    assert len(callbacks) == 1


@pytest.mark.django_db(transaction=True)
def test_real_worker_sends_the_notification(celery_worker_process, patient):
    from audit.notifications import notify_on_commit

    record = patient.patient
    event = clinician_view(record, organization="Brand New Org")
    from django.db import transaction

    with transaction.atomic():
        notify_on_commit([event.pk])
    wait_for(lambda: NotificationSent.objects.filter(event=event).exists(), what="the worker to notify")
    sent = NotificationSent.objects.get(event=event)
    assert sent.user == patient and sent.kinds == ["new_organization"]

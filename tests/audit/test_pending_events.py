"""A portal write never waits for a chain head another writer holds (issue 18).

Issue 18 measured a page's chained write at p95 10.9x its time alone while four ingest senders
ran: the page queued for the patient's chain head behind an ingest group. Now a portal event that
finds its head held is queued (``PendingAccessEvent``) in the page's own transaction and chained
by the next holder: a later page, an ingest group, or the ``audit.chain_pending`` task.

The head is held by a real second PostgreSQL connection (a thread with its own transaction), and
the page's transaction runs with ``lock_timeout`` 2 s: before this change the write waited and
failed with a lock timeout; now it returns at once.
"""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.ingest import events_ingest
from audit.models import AccessEvent, ChainHead, MonthlyAccessCount, PendingAccessEvent
from audit.services import chain_pending, chain_verify, create_heads
from tests.audit.conftest import clinician_view, held_elsewhere
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)


def head_held(patient):
    """The patient's chain head locked by another connection until the block ends (then that
    transaction commits, as an ingest group does)."""
    create_heads([patient.pk])
    return held_elsewhere(lambda: ChainHead.objects.select_for_update().get(patient=patient))


def page_view(patient, **overrides) -> AccessEvent:
    """A portal event (no source_event_id), in its own transaction that would fail after 2 s of
    waiting for a lock."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        return clinician_view(patient, source="portal", **overrides)


def test_a_page_write_does_not_wait_for_a_held_head():
    patient = PatientFactory()
    clinician_view(patient, source="portal")

    with head_held(patient):
        started = time.monotonic()
        event = page_view(patient, details={"page": "study"})
        took = time.monotonic() - started
        # Committed with the page's transaction while the head is still held: not in the log yet.
        assert PendingAccessEvent.objects.filter(patient=patient).count() == 1
        assert AccessEvent.objects.filter(patient=patient).count() == 1

    assert took < 1.0, f"the write waited {took:.2f} s for the head"
    assert event.pk is None and event.seq == 0
    assert chain_pending() == 1
    queued = AccessEvent.objects.get(patient=patient, seq=2)
    assert queued.details == {"page": "study"}
    assert queued.occurred_at == event.occurred_at  # the time of access, not of chaining
    assert queued.recorded_at >= queued.occurred_at
    assert not PendingAccessEvent.objects.exists()
    assert ChainHead.objects.get(patient=patient).seq == 2
    assert sum(MonthlyAccessCount.objects.filter(patient=patient).values_list("count", flat=True)) == 2
    result = chain_verify(patient)
    assert result.ok, result.reason


def test_a_page_write_that_finds_its_head_held_queues_in_two_statements():
    """Beside an ingest batch on the same patients a tenth of a page's writes find the head held
    (benchmarks/access_log_ingest.py). They asked for the head, tried to create it, asked again
    and then queued: four statements. Now the first answer tells a held head from a missing one."""
    patient = PatientFactory()
    clinician_view(patient, source="portal")

    with head_held(patient), transaction.atomic(), CaptureQueriesContext(connection) as queries:
        event = clinician_view(patient, source="portal")

    assert event.pk is None
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2, statements
    assert "audit_pendingaccessevent" in statements[-1]
    assert chain_pending() == 1 and chain_verify(patient).ok


def test_a_page_write_for_a_patient_without_a_head_creates_it_and_is_chained():
    patient = PatientFactory()
    assert not ChainHead.objects.filter(patient=patient).exists()
    with transaction.atomic():
        event = clinician_view(patient, source="portal")
    assert event.pk is not None and event.seq == 1
    assert ChainHead.objects.get(patient=patient).seq == 1
    assert chain_verify(patient).ok


def test_the_next_page_write_chains_queued_events_first():
    patient = PatientFactory()
    with head_held(patient):
        page_view(patient, details={"n": 1})
        page_view(patient, details={"n": 2})

    third = page_view(patient, details={"n": 3})

    assert third.seq == 3
    assert list(AccessEvent.objects.filter(patient=patient).order_by("seq").values_list("details__n", flat=True)) == [1, 2, 3]
    ids = list(AccessEvent.objects.filter(patient=patient).order_by("seq").values_list("pk", flat=True))
    assert ids == sorted(ids)  # seq follows id order (audit/checkpoints.py relies on it)
    assert not PendingAccessEvent.objects.exists()
    assert chain_verify(patient).ok


def test_an_ingest_batch_chains_queued_events_before_its_own():
    patient = PatientFactory(issuer="HOSP", mrn="Q-1")
    with head_held(patient):
        page_view(patient, details={"page": "study"})

    result = events_ingest(
        sender="ehr", source="api", default_actor_type="clinician", default_organization="EHR",
        events=[{"source_event_id": f"e{i}", "occurred_at": "2026-01-05T10:00:00Z", "action": "view",
                 "purpose": "treatment", "patient": {"issuer": "HOSP", "mrn": "Q-1"}} for i in range(3)],
    )

    assert result.count("accepted") == 3
    events = list(AccessEvent.objects.filter(patient=patient).order_by("seq"))
    assert [e.source for e in events] == ["portal", "api", "api", "api"]
    assert not PendingAccessEvent.objects.exists()
    assert chain_verify(patient).ok


def test_a_rolled_back_page_leaves_no_queued_event():
    patient = PatientFactory()
    with head_held(patient):
        with pytest.raises(RuntimeError), transaction.atomic():
            clinician_view(patient, source="portal")
            raise RuntimeError("the action failed")
    assert not PendingAccessEvent.objects.exists()
    assert chain_pending() == 0


def test_an_event_with_a_source_id_still_waits_for_the_head():
    # Its uniqueness is checked against the log, which a queued event is not in yet.
    patient = PatientFactory()
    clinician_view(patient)
    with head_held(patient), pytest.raises(Exception, match="lock timeout"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '300ms'")
        clinician_view(patient, source="api", source_event_id="ehr-1")
    assert not PendingAccessEvent.objects.exists()


def test_verify_audit_chains_queued_events_first():
    patient = PatientFactory()
    with head_held(patient):
        page_view(patient)
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "1 queued portal event chained first" in out.getvalue()
    assert out.getvalue().startswith("OK: 1 events")
    assert not PendingAccessEvent.objects.exists()

"""A portal page's access event costs two statements (issue 18, study-page throughput).

Every study page records one chained event inside its service's transaction. The ORM path took
six round trips (SAVEPOINT, SELECT ... FOR UPDATE of the head, INSERT, UPDATE of the head, the
monthly count, RELEASE); under load each is a wait on a shared database. Now: one UPDATE that
locks the head and takes the next seq, one statement that inserts the event, sets the head's
hash and counts the month. The rows must be exactly those of before: the chain verifies, the
head and the monthly count follow.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AccessEvent, ChainHead, MonthlyAccessCount
from audit.services import chain_verify, record_access
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgresql(db) -> None:
    assert connection.vendor == "postgresql", "the statements counted here are PostgreSQL's: run the suite on PostgreSQL"


def _view(patient, **extra) -> AccessEvent:
    return record_access(patient=patient, action="view", purpose="patient_request", actor_type="patient",
                         actor_name="Patient (self)", **extra)


def test_a_portal_event_in_a_services_transaction_is_two_statements():
    patient = PatientFactory()
    with transaction.atomic():
        _view(patient)  # the head is created on the first event
        with CaptureQueriesContext(connection) as queries:
            event = _view(patient)

    assert len(queries) == 2, [q["sql"][:80] for q in queries]
    stored = AccessEvent.objects.get(pk=event.pk)
    assert (stored.seq, stored.hash, stored.prev_hash) == (2, event.hash, AccessEvent.objects.get(seq=1).hash)
    head = ChainHead.objects.get(patient=patient)
    assert (head.seq, head.last_hash) == (2, event.hash)
    assert MonthlyAccessCount.objects.get(patient=patient).count == 2
    assert chain_verify(patient).ok


def test_the_first_event_creates_the_head():
    patient = PatientFactory()
    with transaction.atomic():
        event = _view(patient, details={"page": "study", "n": 1.0})

    assert ChainHead.objects.get(patient=patient).seq == 1
    assert AccessEvent.objects.get(pk=event.pk).details == {"page": "study", "n": 1}
    assert chain_verify(patient).ok


def test_a_repeated_source_event_still_leaves_the_callers_transaction_usable():
    patient = PatientFactory()
    with transaction.atomic():
        _view(patient, source="api", source_event_id="ehr/1")
        with pytest.raises(IntegrityError):
            _view(patient, source="api", source_event_id="ehr/1")
        _view(patient)  # the caller goes on

    assert list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert chain_verify(patient).ok


def test_every_column_round_trips_and_the_hash_verifies():
    patient = PatientFactory()
    with transaction.atomic():
        event = _view(patient, ip="203.0.113.9", user_agent="Firefox", organization="St. Example", role="Self",
                      details={"page": "study", "nested": {"list": [1, "two", None]}})

    stored = AccessEvent.objects.get(pk=event.pk)
    assert (stored.ip, stored.user_agent, stored.organization, stored.role) == ("203.0.113.9", "Firefox", "St. Example", "Self")
    assert stored.details == {"page": "study", "nested": {"list": [1, "two", None]}}
    assert stored.recorded_at == event.recorded_at and stored.occurred_at == event.occurred_at
    assert chain_verify(patient).ok

"""Concurrent writers for one patient never fork the chain (row lock on the chain head).

A portal writer that finds the head held queues its event instead of waiting (issue 18); once the
queue is worked (``chain_pending``, the beat task) every event is in the chain exactly once.

Real threads, each with its own PostgreSQL connection and transaction, released together by a
barrier (the pattern of django-otp's ConcurrencyTestCase).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AccessEvent, ChainHead
from audit.services import chain_pending, chain_verify
from tests.audit.conftest import clinician_view
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16


def run_together(work: Callable[[int], None], n: int = THREADS) -> list[BaseException]:
    """Run ``work(i)`` in n threads that start at the same moment; return what they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def thread(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer is stuck"
    return errors


@pytest.mark.parametrize("head_exists", [False, True], ids=["first-events", "existing-chain"])
def test_parallel_writers_for_one_patient_append_in_turn(head_exists):
    patient = PatientFactory()
    before = 2 if head_exists else 0
    for _ in range(before):
        clinician_view(patient)

    errors = run_together(lambda i: clinician_view(patient, details={"writer": i}))
    chain_pending()

    assert errors == []
    seqs = list(AccessEvent.objects.filter(patient=patient).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, before + THREADS + 1))
    writers = AccessEvent.objects.filter(patient=patient, seq__gt=before).values_list("details__writer", flat=True)
    assert sorted(writers) == list(range(THREADS))
    assert ChainHead.objects.get(patient=patient).seq == before + THREADS
    result = chain_verify(patient)
    assert result.ok, result.reason
    assert result.checked == before + THREADS


def test_parallel_writers_for_two_patients_keep_two_chains():
    patients = [PatientFactory(), PatientFactory()]

    errors = run_together(lambda i: clinician_view(patients[i % 2], details={"writer": i}))
    chain_pending()

    assert errors == []
    for patient in patients:
        seqs = sorted(AccessEvent.objects.filter(patient=patient).values_list("seq", flat=True))
        assert seqs == list(range(1, THREADS // 2 + 1))
    assert chain_verify().ok


def test_a_resent_event_racing_itself_is_recorded_once():
    patient = PatientFactory()

    errors = run_together(lambda i: clinician_view(patient, source="api", source_event_id="ehr-evt-1"))

    assert len(errors) == THREADS - 1
    assert all(isinstance(e, IntegrityError) for e in errors), errors
    assert AccessEvent.objects.filter(patient=patient).count() == 1
    assert ChainHead.objects.get(patient=patient).seq == 1
    assert chain_verify().ok

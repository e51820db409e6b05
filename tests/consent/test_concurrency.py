"""Simultaneous changes for one patient are all recorded, in order, and the latest is current.

Real threads, each with its own client session, PostgreSQL connection and transaction,
released together by a barrier. The service locks the patient's row before taking the time,
so the decisions' times, their ids and their access events' chain positions all agree.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from audit.models import AccessEvent
from audit.services import chain_verify
from consent import selectors
from consent.models import ConsentDecision
from tests.conftest import login_verified, reauthenticate

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def test_parallel_changes_are_all_recorded_in_order(patient, policy):
    clients = []
    for _ in range(THREADS):
        client = login_verified(Client(), patient)
        reauthenticate(client)
        clients.append(client)
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def change(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = clients[i].post("/consent/change/ai_training/", {"decision": "granted" if i % 2 else "refused"})
            statuses.append(response.status_code)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a change is stuck"
    assert errors == [] and statuses == [302] * THREADS

    decisions = list(ConsentDecision.objects.filter(patient=patient.patient).order_by("pk"))
    assert len(decisions) == THREADS
    times = [d.decided_at for d in decisions]
    assert times == sorted(times) and len(set(times)) == THREADS
    events = AccessEvent.objects.filter(patient=patient.patient, action="modify").order_by("seq")
    assert [e.details["receipt_id"] for e in events] == [str(d.receipt_id) for d in decisions]
    current = selectors.effective_consent(patient.patient, "ai_training").decision
    assert current == decisions[-1]
    assert chain_verify(patient.patient).ok

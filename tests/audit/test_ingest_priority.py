"""A batch from the events API is worked at a lower CPU priority than patients' pages
(``AUDIT_INGEST_NICE``, core.cpu_priority).

With 4 systems sending batches, 50 browsing patients' pages were 1.6-1.9x slower at p95 when
the batch was worked at the pages' own priority, no better than beside any process keeping a core
busy; at nice 10, 1.2-1.4x (benchmarks/site_under_ingest.py, both in each run).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from accounts.services import service_account_create
from audit import api
from audit.models import AccessEvent
from tests.audit.test_ingest_concurrency import event, make_patients, post
from tests.conftest import gunicorn_server

pytestmark = pytest.mark.django_db


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.fixture
def watched(monkeypatch):
    """The thread and nice value each batch's ingest ran at (measurement only: the wrapper
    calls the real ``events_ingest``)."""
    seen: list[tuple[int, int]] = []
    real = api.events_ingest

    def watching(**kwargs):
        seen.append((threading.get_native_id(), _nice()))
        return real(**kwargs)

    monkeypatch.setattr(api, "events_ingest", watching)
    return seen


@pytest.fixture
def sender():
    patients = make_patients(2, prefix="N")
    _account, token = service_account_create(name="nice-ehr", organization="Nice", scopes=["audit:write"])
    return patients, token


def test_a_batch_is_worked_at_the_ingest_nice_value_and_the_request_keeps_its_own(settings, sender, watched):
    settings.AUDIT_INGEST_NICE = 7
    patients, token = sender
    before = _nice()
    response = post(Client(), token, [event("n-1", patients[0], 5), event("n-2", patients[1], 6)])
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2
    assert AccessEvent.objects.filter(source_event_id__startswith="nice-ehr/n-").count() == 2
    [(thread, nice)] = watched
    assert nice == 7 and thread != threading.get_native_id()
    assert _nice() == before


def test_at_nice_0_the_batch_is_worked_in_the_request_itself(settings, sender, watched):
    settings.AUDIT_INGEST_NICE = 0
    patients, token = sender
    assert post(Client(), token, [event("z-1", patients[0], 5)]).status_code == 200
    assert watched == [(threading.get_native_id(), _nice())]


def test_a_refusal_in_the_lowered_thread_is_the_documented_answer(settings, sender):
    settings.AUDIT_INGEST_NICE = 10
    _patients, token = sender
    response = post(Client(), token, [])
    assert response.status_code == 400
    assert response.json()["error"] == "empty_batch"


def _nices(pid: int) -> dict[int, int]:
    """Each thread of process ``pid`` and its nice value, from /proc."""
    nices = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nices[int(task.name)] = int(fields[16])  # the 19th field of stat: nice
    return nices


def test_under_gunicorn_the_workers_lowered_thread_records_the_batch(transactional_db, tmp_path):
    # The deployed server: a sync worker forks after start-up, makes its lowered thread on the
    # first batch, and answers from the request's thread at the pages' priority.
    [patient] = make_patients(1, prefix="G")
    _account, token = service_account_create(name="gunicorn-ehr", organization="G", scopes=["audit:write"])
    with gunicorn_server(tmp_path / "gunicorn.log", AUDIT_INGEST_NICE="11") as (base, server):
        request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
            f"{base}/api/v1/audit/events", data=json.dumps({"events": [event("g-1", patient, 5)]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            assert response.status == 200
            assert json.load(response)["accepted"] == 1
        [worker] = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        nices = _nices(int(worker))
    assert nices.pop(int(worker)) == 0  # the request's thread
    assert 11 in nices.values()
    assert AccessEvent.objects.filter(source_event_id="gunicorn-ehr/g-1").exists()

"""Batches of events wait for an ingest slot (audit.ingest.ingest_slot, issue 18), on PostgreSQL.

Four senders ingesting at once kept both cores of a 2-core machine busy, and a patient's page
waited for a core at every step (its chained write 5.0x slower at p95). Now at most
``AUDIT_INGEST_CONCURRENCY`` batches are ingested at once (by default one fewer than the cores)
and the rest wait their turn without using CPU, or get a 503 after ``AUDIT_INGEST_WAIT_SECONDS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from accounts.services import service_account_create
from audit import ingest
from audit.models import AccessEvent
from audit.services import chain_verify
from tests.audit.conftest import held_elsewhere
from tests.audit.test_ingest_concurrency import event, make_patients, post

pytestmark = pytest.mark.django_db(transaction=True)


def slot_taken(slot: int = 0, release_after: float = 60):
    """Another connection holds ingest slot ``slot`` (as a batch being ingested would) while the
    block runs, or for ``release_after`` seconds."""

    def take() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [ingest._SLOT_NAMESPACE, slot])

    return held_elsewhere(take, seconds=release_after)


def waiting_for_a_slot() -> int:
    """Connections waiting for an advisory lock in the slots' namespace."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND NOT granted",
                       [ingest._SLOT_NAMESPACE])
        return cursor.fetchone()[0]


@pytest.fixture
def sender():
    patients = make_patients(2, prefix="S")
    _account, token = service_account_create(name="slot-ehr", organization="Slot", scopes=["audit:write"])
    return patients, token


def test_a_batch_waits_for_the_slot_and_is_then_recorded(settings, sender):
    settings.AUDIT_INGEST_CONCURRENCY = 1
    patients, token = sender
    batch = [event("w-1", patients[0], 1), event("w-2", patients[1], 2)]
    answers = []
    with slot_taken():
        thread = threading.Thread(target=lambda: (answers.append(post(Client(), token, batch)), connection.close()))
        thread.start()
        deadline = time.monotonic() + 10
        while waiting_for_a_slot() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The batch waits (no CPU, nothing written) while the slot is taken.
        assert waiting_for_a_slot() == 1
        assert not answers and AccessEvent.objects.count() == 0
    thread.join(timeout=30)

    assert answers[0].status_code == 200, answers[0].content
    assert answers[0].json()["accepted"] == 2
    assert chain_verify().ok


def test_a_batch_that_waits_too_long_gets_503_with_retry_after_and_nothing_is_recorded(settings, sender):
    settings.AUDIT_INGEST_CONCURRENCY = 1
    settings.AUDIT_INGEST_WAIT_SECONDS = 1
    patients, token = sender
    batch = [event("t-1", patients[0], 1)]
    with slot_taken():
        started = time.monotonic()
        response = post(Client(), token, batch)
        waited = time.monotonic() - started

    assert response.status_code == 503, response.content
    assert response["Retry-After"].isdigit()
    assert response.json()["error"] == "busy"
    assert 0.9 < waited < 10
    assert AccessEvent.objects.count() == 0
    again = post(Client(), token, batch)
    assert again.status_code == 200 and again.json()["accepted"] == 1


def test_a_free_slot_is_taken_at_once_when_another_is_busy(settings, sender):
    settings.AUDIT_INGEST_CONCURRENCY = 2
    settings.AUDIT_INGEST_WAIT_SECONDS = 1
    patients, token = sender
    with slot_taken(slot=0):
        response = post(Client(), token, [event("f-1", patients[0], 1)])
    assert response.status_code == 200, response.content


def test_the_slot_is_given_back_after_a_refused_batch_and_after_each_batch(settings, sender):
    settings.AUDIT_INGEST_CONCURRENCY = 1
    settings.AUDIT_INGEST_WAIT_SECONDS = 1
    patients, token = sender
    client = Client()
    bad = client.post("/api/v1/audit/events", "{not json", content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400
    assert post(client, token, []).status_code == 400
    for n in range(3):
        assert post(client, token, [event(f"g-{n}", patients[0], n)]).status_code == 200
    # Nothing of this connection's still holds a slot: another one takes it at once.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                       [ingest._SLOT_NAMESPACE])
        assert cursor.fetchone()[0] == 0


def test_import_access_events_waits_for_the_slot_too(settings, sender, tmp_path):
    from django.core.management import call_command

    settings.AUDIT_INGEST_CONCURRENCY = 1
    patients, _token = sender
    rows = tmp_path / "events.json"
    rows.write_text(json.dumps({"events": [event("i-1", patients[0], 1)]}))
    with slot_taken(release_after=0.5):
        started = time.monotonic()
        call_command("import_access_events", str(rows), "--sender", "old-ris")
        waited = time.monotonic() - started
    assert waited >= 0.4
    assert AccessEvent.objects.filter(source_event_id="old-ris/i-1").count() == 1


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AUDIT_INGEST_CONCURRENCY", "two", "AUDIT_INGEST_CONCURRENCY must be an integer"),
    ("AUDIT_INGEST_CONCURRENCY", "0", "AUDIT_INGEST_CONCURRENCY must be between 1 and 64"),
    ("AUDIT_INGEST_WAIT_SECONDS", "0", "AUDIT_INGEST_WAIT_SECONDS must be between 1 and 600"),
    ("AUDIT_INGEST_WAIT_SECONDS", "3600", "AUDIT_INGEST_WAIT_SECONDS must be between 1 and 600"),
    ("AUDIT_INGEST_NICE", "low", "AUDIT_INGEST_NICE must be an integer"),
    ("AUDIT_INGEST_NICE", "20", "AUDIT_INGEST_NICE must be between 0 and 19"),
])
def test_a_mistyped_slot_setting_stops_the_process_with_its_name(name, value, message):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=Path(__file__).resolve().parents[2],  # noqa: S603
                            env={**os.environ, name: value}, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]

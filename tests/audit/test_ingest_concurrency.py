"""The events API under concurrent senders, on PostgreSQL (issue 18, "Done means").

Real threads, each with its own database connection, post through the real endpoint (token,
rate limit, JSON, ingest, commit). The senders name the same patients in different orders and
re-send each other's events: before batches locked their chain heads in one order, PostgreSQL
found deadlocks on audit_chainhead and the API answered 500.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections, transaction
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import service_account_create
from audit import services
from audit.models import AccessEvent, ChainHead, MonthlyAccessCount
from audit.services import chain_verify, record_access
from imaging.models import Study
from tests.audit.conftest import held_elsewhere
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/audit/events"
SENDERS = 4
BATCHES = 4  # per sender; 16 requests stay within the token's burst (API_RATE_BURST)


@pytest.fixture(autouse=True)
def _every_sender_at_once(settings):
    """What these tests check is the batches' own locking, so every sender ingests at once (the
    default on this machine, one batch at a time, would line them up: tests/audit/test_ingest_slots.py)."""
    settings.AUDIT_INGEST_CONCURRENCY = SENDERS


def held_chain_head(patient):
    """Another connection holds ``patient``'s chain head (as a long batch would) while the block runs."""
    return held_elsewhere(lambda: ChainHead.objects.select_for_update().get(patient=patient))


def make_patients(n: int, prefix: str = "C") -> list:
    patients = [PatientFactory(issuer="ST-CONC", mrn=f"{prefix}-{i}") for i in range(n)]
    for p in patients:
        Study.objects.create(patient=p, study_uid=f"2.25.77{p.pk}", accession=f"ACC-{p.pk}")
    return patients


def event(sid: str, patient, minutes: int) -> dict:
    return {
        "source_event_id": sid,
        "occurred_at": (timezone.now() - dt.timedelta(minutes=minutes)).isoformat(),
        "patient": {"issuer": patient.issuer, "mrn": patient.mrn},
        "accession": f"ACC-{patient.pk}",
        "actor": {"type": "clinician", "name": f"Dr Conc {minutes % 7}", "organization": f"Org {minutes % 3}"},
        "purpose": "treatment",
        "action": "view",
    }


def post(client: Client, token: str, events: list[dict]):
    return client.post(URL, json.dumps({"events": events}), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


def run_senders(work) -> list[BaseException]:
    barrier = threading.Barrier(SENDERS)
    errors: list[BaseException] = []

    def thread(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a sender is stuck"
    return errors


def test_concurrent_senders_on_the_same_patients_never_fail_and_record_each_event_once():
    patients = make_patients(12)
    _account, token = service_account_create(name="conc-ehr", organization="Conc", scopes=["audit:write"])
    # Events every sender sends (a re-send racing the original), and events only one sends.
    shared = [event(f"shared-{n}", patients[n % len(patients)], n) for n in range(120)]
    own = {i: [event(f"own-{i}-{n}", patients[(n * 5 + i) % len(patients)], 1000 + n) for n in range(120)]
           for i in range(SENDERS)}
    responses: dict[int, list] = {i: [] for i in range(SENDERS)}

    def sender(i: int) -> None:
        events = shared + own[i]
        random.Random(i).shuffle(events)  # the same patients, in a different order per sender
        size = len(events) // BATCHES
        client = Client()
        for b in range(BATCHES):
            response = post(client, token, events[b * size : (b + 1) * size])
            responses[i].append((response.status_code, response.json()))

    errors = run_senders(sender)

    assert errors == []
    statuses = [code for i in responses for code, _body in responses[i]]
    assert statuses == [200] * SENDERS * BATCHES, [body for i in responses for _c, body in responses[i]]
    outcomes = Counter()
    accepted_ids = []
    for i in responses:
        for _code, body in responses[i]:
            for r in body["results"]:
                outcomes[(r["source_event_id"], r["status"])] += 1
                if r["status"] == "accepted":
                    accepted_ids.append(r["id"])
    for e in shared:
        assert outcomes[(e["source_event_id"], "accepted")] == 1
        assert outcomes[(e["source_event_id"], "duplicate")] == SENDERS - 1
    for i in own:
        for e in own[i]:
            assert outcomes[(e["source_event_id"], "accepted")] == 1
    total = len(shared) + SENDERS * 120
    assert len(accepted_ids) == len(set(accepted_ids)) == total
    assert AccessEvent.objects.count() == total
    assert sorted(AccessEvent.objects.values_list("pk", flat=True)) == sorted(accepted_ids)
    result = chain_verify()
    assert result.ok, result.reason
    assert result.checked == total
    # Each patient's chain runs 1..n in id order (what audit/checkpoints.py's tree relies on).
    for p in patients:
        seqs = list(AccessEvent.objects.filter(patient=p).order_by("pk").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        assert ChainHead.objects.get(patient=p).seq == len(seqs)
    assert MonthlyAccessCount.objects.aggregate(n=Sum("count"))["n"] == total


def test_a_held_chain_head_answers_503_with_retry_after_and_the_retry_is_recorded():
    patient, other = make_patients(2)
    _account, token = service_account_create(name="busy-ehr", organization="Busy", scopes=["audit:write"])
    ChainHead.objects.create(patient=patient)
    batch = [event("b-1", other, 1), event("b-2", patient, 2)]
    with held_chain_head(patient):
        response = post(Client(), token, batch)

    assert response.status_code == 503, response.content
    assert response["Retry-After"].isdigit()
    assert response.json()["error"] == "busy"
    assert AccessEvent.objects.count() == 0  # one group (a group goes in whole or not at all): not even the free patient's event
    again = post(Client(), token, batch)
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["accepted", "accepted"]
    assert chain_verify().ok


def test_a_batch_is_a_handful_of_statements_per_group_whatever_its_size():
    patients = make_patients(20)
    _account, token = service_account_create(name="count-ehr", organization="Count", scopes=["audit:write"])
    client = Client()
    counts = []
    post(client, token, [event("warm-up", patients[0], 0)])  # the token's first request notes more
    group = services.GROUP_EVENTS
    for size, run in ((10, "a"), (group, "b"), (2 * group, "c")):
        events = [event(f"{run}-{n}", patients[n % len(patients)], n) for n in range(size)]
        with CaptureQueriesContext(connection) as queries:
            response = post(client, token, events)
        assert response.status_code == 200
        assert response.json()["accepted"] == size
        counts.append(len(queries))
    # The same statements for 10 events on 10 patients as for a group's worth on 20 (it was ~6 per
    # event), and a few more per group of GROUP_EVENTS.
    assert counts[0] == counts[1], counts
    assert 0 < counts[2] - counts[1] <= 12, counts
    assert chain_verify().ok


def _waiting_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            ["%audit_chainhead%FOR UPDATE%"],
        )
        return cursor.fetchone()[0] > 0


def test_a_portal_write_does_not_wait_for_a_batch_stuck_on_another_patient(monkeypatch):
    """A batch held every head it had locked until its end: a page for a patient early in the
    batch waited while the batch waited on a later patient (here the NOWAIT lock fails)."""
    monkeypatch.setattr(services, "HEADS_PATIENCE", 0)  # queue at once instead of retrying NOWAIT
    monkeypatch.setattr(services, "GROUP_EVENTS", 1, raising=False)
    first, second = make_patients(2)
    _account, token = service_account_create(name="page-ehr", organization="Page", scopes=["audit:write"])
    ChainHead.objects.create(patient=first)
    ChainHead.objects.create(patient=second)
    answers = []

    def batch() -> None:
        try:
            answers.append(post(Client(), token, [event("p-1", first, 1), event("p-2", second, 2)]))
        finally:
            connections["default"].close()

    with held_chain_head(second):
        sender = threading.Thread(target=batch)
        sender.start()
        # The batch has done what it can and queues for the held head (polled, not slept on).
        deadline = time.monotonic() + 30
        while not _waiting_for_a_lock():
            assert time.monotonic() < deadline, "the batch never queued for the held head"
            time.sleep(0.01)
        with transaction.atomic():
            ChainHead.objects.select_for_update(nowait=True).get(patient=first)  # free: not held by the batch
            record_access(patient=first, action="view", purpose="patient_request", actor_type="patient",
                          actor_name="Patient (self)")
    sender.join(timeout=60)

    assert [a.status_code for a in answers] == [200]
    assert [r["status"] for r in answers[0].json()["results"]] == ["accepted", "accepted"]
    assert list(AccessEvent.objects.filter(patient=first).order_by("seq").values_list("source", flat=True)) == [
        "api", "portal"]
    assert chain_verify().ok


def test_a_503_part_way_leaves_earlier_groups_recorded_and_the_retry_answers_them_duplicate(monkeypatch):
    """What a sender reads after a 503 (README, OpenAPI): re-sending is safe; what went in comes
    back as a duplicate, the rest is accepted, nothing twice."""
    monkeypatch.setattr(services, "GROUP_EVENTS", 1)
    monkeypatch.setattr(services, "HEADS_PATIENCE", 0)
    monkeypatch.setattr(services, "LOCK_TIMEOUT", "50ms")  # the held head is held past it
    first, second = make_patients(2)
    _account, token = service_account_create(name="part-ehr", organization="Part", scopes=["audit:write"])
    ChainHead.objects.create(patient=second)
    batch = [event("q-2", second, 2), event("q-1", first, 1)]
    with held_chain_head(second):
        response = post(Client(), token, batch)

    assert response.status_code == 503, response.content
    assert response["Retry-After"].isdigit()
    assert list(AccessEvent.objects.values_list("patient_id", flat=True)) == [first.pk]  # its group went in
    again = post(Client(), token, batch)
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["accepted", "duplicate"]
    assert AccessEvent.objects.count() == 2
    assert chain_verify().ok


def test_import_access_events_waits_out_a_busy_log_then_says_plainly_what_to_do(tmp_path, monkeypatch):
    """A held chain head made the command end in a traceback (an uncaught ``Busy``)."""
    from django.core.management import CommandError, call_command

    from audit.management.commands import import_access_events

    monkeypatch.setattr(import_access_events, "BUSY_PAUSES", (0,))  # one retry, no pause
    patient = make_patients(1)[0]
    ChainHead.objects.create(patient=patient)
    rows = tmp_path / "events.csv"
    rows.write_text(
        "source_event_id,occurred_at,issuer,mrn,study_uid,accession,actor_type,actor_name,actor_ref,organization,role,purpose,action,outcome\n"
        f"busy-1,2026-01-02T10:00:00+00:00,{patient.issuer},{patient.mrn},,,clinician,Dr A,a,Mercy,Radiologist,treatment,view,success\n",
        encoding="utf-8",
    )
    with held_chain_head(patient), pytest.raises(CommandError, match="stayed busy .*Run the same command again"):
        call_command("import_access_events", str(rows), "--sender", "old-ris")
    assert AccessEvent.objects.count() == 0
    call_command("import_access_events", str(rows), "--sender", "old-ris")
    assert AccessEvent.objects.filter(source_event_id__endswith="busy-1").count() == 1


def test_pages_writing_while_senders_ingest_are_all_recorded_once_in_verified_chains():
    """Pages no longer wait for a batch's heads (a held head queues the page's event,
    audit.services); with four senders and a page writer on the same patients, every event ends
    up in its patient's chain exactly once, in id order, once the queue is worked."""
    patients = make_patients(6, prefix="M")
    _account, token = service_account_create(name="mixed-ehr", organization="Mixed", scopes=["audit:write"])
    stop = threading.Event()
    page_events: list[int] = []
    page_errors: list[BaseException] = []

    def page_writer() -> None:
        try:
            n = 0
            while not stop.is_set():
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = '1s'")  # a page that waited would fail here
                    record_access(patient=patients[n % len(patients)], action="view", purpose="patient_request",
                                  actor_type="patient", actor_name="Patient (self)", details={"n": n})
                page_events.append(n)
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            page_errors.append(exc)
        finally:
            connection.close()

    def sender(i: int) -> None:
        client = Client()
        for b in range(BATCHES):
            events = [event(f"m-{i}-{b}-{n}", patients[(n + i) % len(patients)], n) for n in range(60)]
            random.Random(i * 10 + b).shuffle(events)
            response = post(client, token, events)
            assert response.status_code == 200, response.content

    pages = threading.Thread(target=page_writer)
    pages.start()
    try:
        errors = run_senders(sender)
    finally:
        stop.set()
        pages.join(timeout=60)
    services.chain_pending()

    assert errors == [] and page_errors == [], (errors, page_errors)
    assert page_events, "the page writer never wrote"
    portal = AccessEvent.objects.filter(source="portal")
    assert sorted(portal.values_list("details__n", flat=True)) == page_events
    total = SENDERS * BATCHES * 60 + len(page_events)
    assert AccessEvent.objects.count() == total
    for p in patients:
        seqs = list(AccessEvent.objects.filter(patient=p).order_by("pk").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    assert MonthlyAccessCount.objects.aggregate(n=Sum("count"))["n"] == total
    result = chain_verify()
    assert result.ok, result.reason

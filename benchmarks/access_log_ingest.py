"""API ingest throughput under concurrent senders, against the database's own floor, and what it
does to a portal page's chained write.

Not a test: prints numbers. Uses its own PostgreSQL database (BENCH_INGEST_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/lightbox_bench_ingest, created if missing; the log is
append-only, so each run adds its own patients). Senders are processes (forked after setup, one
database connection each) posting batches of 500 to ``POST /api/v1/audit/events`` through
Django's test client (token check, rate limit, JSON parsing, validation, ingest, commit); each
sender has its own token. Measured, in rounds that alternate the cases so load from other
processes falls on all of them:

- floor: the same 500 rows (as the ingest stores them: hashes, details) inserted into
  ``audit_accessevent`` with psycopg ``executemany``, one transaction per batch;
- 1 sender; 4 senders on the same patients (each batch in its own shuffled order); 4 senders on
  disjoint patients: events/s over the wall time, and any answer that is not 200;
- the insert step alone: ingest's (ids from the sequence, then COPY) against ``executemany ... RETURNING id``;
- a portal page's chained write (``record_access`` in its own transaction, as a study view
  writes it, on the senders' patients), paced every 20 ms: p50/p95 alone, with 4 senders (and
  how many writes were queued because a sender held the head) and with 1 sender, the senders
  sending for as long as the page writes; and as controls, with 4 processes that only use CPU
  (what any four busy processes cost the page on this machine), the same 4 at idle priority, and
  1 at idle priority (one core left free).

The senders go through ``AUDIT_INGEST_CONCURRENCY`` ingest slots as in production (by default one
fewer than the cores); set it in the environment to compare.

    .venv/bin/python benchmarks/access_log_ingest.py [--rounds 3] [--batches 6] [--patients 50] [--group N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/lightbox_bench_ingest"
BATCH = 500
PAGE_PACE = 0.02  # seconds between a page's writes
# Batches each of 4 senders is given while a page writes for 4 s (1 sender: 4 times as many):
# more than they can send in that time, at up to 10,000 events/s.
PAGE_BATCHES = 40
POOL = 5  # processes: 4 senders and a page

# Filled in the parent before forking; the children read them (fork shares memory).
STATE: dict = {}


def _events(run: str, patients: list, count: int, seed: int) -> list[dict]:
    from django.utils import timezone

    now = timezone.now()
    rng = random.Random(seed)
    events = []
    for i in range(count):
        p = rng.choice(patients)
        events.append({
            "source_event_id": f"{run}-{i}",
            "occurred_at": (now - dt.timedelta(minutes=i)).isoformat(),
            "patient": {"issuer": p.issuer, "mrn": p.mrn},
            "accession": f"A{p.pk}",
            "actor": {"type": "clinician", "name": f"Dr Bench {i % 40}", "role": "Radiologist"},
            "purpose": "treatment",
            "action": "view",
        })
    return events


def _sender(args: tuple[str, list[str], float | None]) -> tuple[float, float, list[int], int, list[float]]:
    """Post the bodies in order, all of them or (``until``, ``time.monotonic()``) those begun
    before then; (start, end, status codes, accepted, seconds each batch held its heads)."""
    token, bodies, until = args
    from django.test import Client

    STATE["holds"] = []

    client = Client()
    codes, accepted = [], 0
    start = time.monotonic()
    for body in bodies:
        if until is not None and time.monotonic() >= until:
            break
        response = client.post("/api/v1/audit/events", body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {token}")
        codes.append(response.status_code)
        if response.status_code == 200:
            accepted += response.json()["accepted"]
    return start, time.monotonic(), codes, accepted, STATE["holds"]


def _warm(args: tuple[str, list[str]]) -> None:
    """One batch from each pool process (the barrier keeps each process to one)."""
    STATE["barrier"].wait(timeout=60)
    _sender((*args, None))


def _watch_holds() -> None:
    """Time from a group's heads being locked to its commit (measurement only: wraps two
    functions, the code path is unchanged). A batch commits in groups of GROUP_EVENTS."""
    from audit import services

    lock, commit = services._lock_heads, services._commit_group

    def timed_lock(patient_ids, *, nowait):
        heads = lock(patient_ids, nowait=nowait)
        STATE["locked_at"] = time.monotonic()
        return heads

    def timed_commit(events, give_up):
        saved = commit(events, give_up)  # returns after the group's commit
        STATE.setdefault("holds", []).append(time.monotonic() - STATE["locked_at"])
        return saved

    services._lock_heads, services._commit_group = timed_lock, timed_commit


def _page(seconds: float) -> tuple[list[float], int]:
    """A patient's page writing its chained event, paced, for ``seconds``; the latencies, and how
    many of the writes found their head held and were queued instead of waiting."""
    from django.db import connection, transaction

    from audit.services import record_access

    patients = STATE["page_patients"]
    latencies = []
    queued = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        started = time.monotonic()
        with transaction.atomic():
            event = record_access(patient=patients[i % len(patients)], action="view", purpose="patient_request",
                                  actor_type="patient", actor_name="Patient (self)", source="portal")
        latencies.append(time.monotonic() - started)
        queued += event.pk is None
        i += 1
        time.sleep(max(0.0, PAGE_PACE - (time.monotonic() - started)))
    connection.close()
    return latencies, queued


def _burn(seconds: float) -> None:
    """Keep one CPU busy for ``seconds`` (no database): the control for the page's latency, what
    four busy processes cost a page on this machine whatever they do."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(range(1000))


def _burn_idle(seconds: float) -> None:
    """``_burn`` at Linux's lowest CPU priority (SCHED_IDLE: it gives way to any other process at
    once): the second control, whether any priority given to ingest could keep a page at its
    pace while four processes keep both cores busy."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    _burn(seconds)


def _page_beside_idle(pool, count: int) -> list[float]:
    """The page's latencies while ``count`` processes burn CPU at idle priority (processes of
    their own: the pool's must keep their priority)."""
    page = pool.apply_async(_page, (4.0,))
    idle = [multiprocessing.get_context("fork").Process(target=_burn_idle, args=(4.0,)) for _ in range(count)]
    for process in idle:
        process.start()
    for process in idle:
        process.join()
    return page.get()[0]


def _in_children(pool, work: list[tuple[str, list[str]]], page_seconds: float = 0.0):
    """Run the senders (and a page, if asked) at once in the pool; (events/s, bad codes, page
    latencies, head hold times). With a page, the senders send for as long as the page writes
    (give them more batches than they can send in ``page_seconds``), so every write of the page
    is measured under ingest."""
    until = time.monotonic() + page_seconds if page_seconds else None
    page = pool.apply_async(_page, (page_seconds,)) if page_seconds else None
    results = pool.map(_sender, [(token, bodies, until) for token, bodies in work], chunksize=1)
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    sent = sum(len(r[2]) for r in results) * BATCH
    if page_seconds:
        assert all(len(r[2]) < len(bodies) for r, (_t, bodies) in zip(results, work, strict=True)), \
            "a sender ran out of batches before the page stopped: give it more"
    bad = [c for r in results for c in r[2] if c != 200]
    accepted = sum(r[3] for r in results)
    assert accepted == sent or bad, (accepted, sent)
    holds = [h for r in results for h in r[4]]
    return sent / (end - start), bad, (page.get() if page else ([], 0)), holds


def _floor_rows(patient_id: int, start_seq: int) -> list[tuple]:
    from django.utils import timezone

    now = timezone.now()
    details = json.dumps({"reported_by": "bench"})
    return [
        (now - dt.timedelta(minutes=i), now, patient_id, None, "clinician", f"Dr Bench {i % 40}", "", "Bench EHR",
         "Radiologist", "treatment", "view", "success", "api", f"floor/{uuid.uuid4().hex}", None, "", details,
         start_seq + i, "a" * 64, "b" * 64)
        for i in range(BATCH)
    ]


_INSERT = (
    "INSERT INTO audit_accessevent (occurred_at, recorded_at, patient_id, study_id, actor_type, actor_name, actor_ref, "
    "organization, role, purpose, action, outcome, source, source_event_id, ip, user_agent, details, seq, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
)


def _floor(url: str, patient_id: int, start_seq: int) -> float:
    """Seconds to insert 500 rows with psycopg executemany in one transaction."""
    import psycopg

    rows = _floor_rows(patient_id, start_seq)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT, rows)
        return time.perf_counter() - started


def _insert_step(url: str, patient_id: int, start_seq: int, other_seq: int) -> tuple[float, float]:
    """The insert step alone: what ingest uses (``audit.services._insert``: ids from the sequence,
    then COPY) for 500 events against executemany ... RETURNING id."""
    import psycopg
    from django.db import transaction

    from audit.models import AccessEvent
    from audit.services import _insert

    columns = ("occurred_at", "recorded_at", "patient_id", "study_id", "actor_type", "actor_name", "actor_ref",
               "organization", "role", "purpose", "action", "outcome", "source", "source_event_id", "ip",
               "user_agent", "details", "seq", "prev_hash", "hash")
    rows = _floor_rows(patient_id, start_seq)
    events = [AccessEvent(**{**dict(zip(columns, row, strict=True)), "details": {"reported_by": "bench"}}) for row in rows]
    started = time.perf_counter()
    with transaction.atomic():
        _insert(events)
    bulk = time.perf_counter() - started
    rows = _floor_rows(patient_id, other_seq)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT + " RETURNING id", rows, returning=True)
        many = time.perf_counter() - started
    return bulk, many


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=6, help="Batches of 500 per sender per case.")
    parser.add_argument("--patients", type=int, default=50, help="Patients per sender set.")
    parser.add_argument("--group", type=int, default=0, help="Events per transaction (default: GROUP_EVENTS).")
    args = parser.parse_args()
    url = os.environ.get("BENCH_INGEST_DATABASE_URL", DEFAULT_DB)
    # The senders are the only clients: the per-token rate limit is not what is measured.
    os.environ["API_RATE_LIMIT"] = os.environ["API_RATE_BURST"] = "100000"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from access_log_scale import ensure_database, setup

    ensure_database(url)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        setup(url, Path(tmp))
        from django.conf import settings
        from django.db import connections

        from accounts.services import service_account_create
        from audit import services
        from imaging.models import Patient, Study

        if args.group:
            services.GROUP_EVENTS = args.group  # set before the senders fork
        GROUP_EVENTS = services.GROUP_EVENTS

        settings.ALLOWED_HOSTS = ["testserver"]
        run = uuid.uuid4().hex[:8]
        # No ANALYZE before the run: each run adds ~100k rows, and the duplicate look-up's plan
        # must not depend on statistics taken before them (tests/audit/test_ingest_lookup_plan.py).

        def patient_set(name: str) -> list:
            made = Patient.objects.bulk_create(
                [Patient(issuer="BENCH-INGEST", mrn=f"{run}-{name}-{i}", name="Bench") for i in range(args.patients)]
            )
            Study.objects.bulk_create([Study(patient=p, study_uid=f"2.25.{uuid.uuid4().int}", accession=f"A{p.pk}")
                                       for p in made])
            return made

        shared = patient_set("shared")
        disjoint = [patient_set(f"d{s}") for s in range(4)]
        floor_patient = patient_set("floor")[0]
        STATE["page_patients"] = shared[:10]
        tokens = [service_account_create(name=f"bench-{run}-{s}", organization="Bench EHR", scopes=["audit:write"])[1]
                  for s in range(4)]
        counter = iter(range(10**9))

        def bodies(patients: list, batches: int = args.batches) -> list[str]:
            n = next(counter)
            events = _events(f"{run}-{n}", patients, BATCH * batches, seed=n)
            return [json.dumps({"events": events[b * BATCH : (b + 1) * BATCH]}) for b in range(batches)]

        seqs = iter(range(1, 10**9, BATCH))  # the floor patient's rows: 500 seq numbers per batch
        figures: dict[str, list[float]] = {k: [] for k in ("floor", "one", "shared", "disjoint", "bulk", "many")}
        bad: list[int] = []
        holds: dict[str, list[float]] = {"one": [], "shared": []}
        page_alone: list[float] = []
        page_loaded: list[float] = []
        page_burnt: list[float] = []
        page_idle: list[float] = []
        page_one: list[float] = []  # the page beside 1 sender
        page_idle_one: list[float] = []  # beside 1 process burning CPU at idle priority
        queued = 0
        connections.close_all()
        _watch_holds()
        STATE["barrier"] = multiprocessing.get_context("fork").Barrier(POOL)
        with multiprocessing.get_context("fork").Pool(POOL) as pool:
            # Not measured: each process sends one batch first (its lazy imports, its database
            # connection), as a running server's workers did long before the batches timed here;
            # round 1 was otherwise a third slower than the others.
            pool.map(_warm, [(tokens[i % 4], bodies(shared, 1)) for i in range(POOL)], chunksize=1)
            for _round in range(args.rounds):
                figures["floor"].append(BATCH / statistics.median(
                    [_floor(url, floor_patient.pk, next(seqs)) for _ in range(5)]))
                rate, b, _, h = _in_children(pool, [(tokens[0], bodies(shared))])
                figures["one"].append(rate)
                holds["one"] += h
                bad += b
                rate, b, _, h = _in_children(pool, [(tokens[s], bodies(shared)) for s in range(4)])
                figures["shared"].append(rate)
                holds["shared"] += h
                bad += b
                rate, b, _, _h = _in_children(pool, [(tokens[s], bodies(disjoint[s])) for s in range(4)])
                figures["disjoint"].append(rate)
                bad += b
                page_alone += pool.apply(_page, (4.0,))[0]
                rate, b, (lat, q), _h = _in_children(pool, [(tokens[s], bodies(shared, PAGE_BATCHES))
                                                            for s in range(4)], page_seconds=4.0)
                bad += b
                page_loaded += lat
                queued += q
                _rate, b, (lat, _q), _h = _in_children(pool, [(tokens[0], bodies(shared, 4 * PAGE_BATCHES))],
                                                       page_seconds=4.0)
                bad += b
                page_one += lat
                page = pool.apply_async(_page, (4.0,))
                pool.map(_burn, [4.0] * 4, chunksize=1)
                page_burnt += page.get()[0]
                page_idle += _page_beside_idle(pool, 4)
                page_idle_one += _page_beside_idle(pool, 1)
                bulk, many = _insert_step(url, floor_patient.pk, next(seqs), next(seqs))
                figures["bulk"].append(BATCH / bulk)
                figures["many"].append(BATCH / many)
                connections.close_all()
        floor = statistics.median(figures["floor"])
        print(f"Database: {url}; {args.rounds} rounds, {args.batches} batches of {BATCH} per sender, "
              f"{args.patients} patients per set, {GROUP_EVENTS} events per transaction, "
              f"{settings.AUDIT_INGEST_CONCURRENCY} batch(es) at once; load average {os.getloadavg()[0]:.1f}")
        print(f"| floor: executemany of {BATCH} rows | {floor:,.0f} events/s "
              f"(rounds {', '.join(f'{v:,.0f}' for v in figures['floor'])}) |")
        for key, label in (("one", "1 sender"), ("shared", "4 senders, same patients shuffled"),
                           ("disjoint", "4 senders, disjoint patients")):
            value = statistics.median(figures[key])
            print(f"| ingest, {label} | {value:,.0f} events/s (rounds {', '.join(f'{v:,.0f}' for v in figures[key])}) "
                  f"| {value / floor:.0%} of the floor (goal >= 25%) |")
        print(f"| answers other than 200 | {len(bad)} {sorted(set(bad))} | goal 0 |")
        bulk, many = statistics.median(figures["bulk"]), statistics.median(figures["many"])
        print(f"| insert step: ingest's (ids, then COPY) | {bulk:,.0f} rows/s | executemany RETURNING id {many:,.0f} rows/s | "
              f"{bulk / many:.2f}x |")
        for key, label in (("one", "1 sender"), ("shared", "4 senders, same patients")):
            print(f"| heads held per group of {GROUP_EVENTS} (lock to commit), {label} | p50 {pct(holds[key], 0.5) * 1000:.0f} ms, "
                  f"p95 {pct(holds[key], 0.95) * 1000:.0f} ms |")
        a50, a95 = pct(page_alone, 0.5) * 1000, pct(page_alone, 0.95) * 1000
        l50, l95 = pct(page_loaded, 0.5) * 1000, pct(page_loaded, 0.95) * 1000
        print(f"| page's chained write, alone ({len(page_alone)}) | p50 {a50:.1f} ms, p95 {a95:.1f} ms |")
        print(f"| the same with 4 senders ({len(page_loaded)}; {queued} found their head held and were queued) | "
              f"p50 {l50:.1f} ms, p95 {l95:.1f} ms | {l50 / a50:.2f}x / {l95 / a95:.2f}x (the issue's page goal: site_under_ingest.py) |")
        b50, b95 = pct(page_burnt, 0.5) * 1000, pct(page_burnt, 0.95) * 1000
        print(f"| control: the same with 4 processes that only use CPU ({len(page_burnt)}) | p50 {b50:.1f} ms, "
              f"p95 {b95:.1f} ms | {b50 / a50:.2f}x / {b95 / a95:.2f}x |")
        for values, label in ((page_idle, "control: the same 4 at idle priority, SCHED_IDLE"),
                              (page_one, "the page with 1 sender"),
                              (page_idle_one, "control: 1 process using CPU at idle priority (one core left free)")):
            v50, v95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
            print(f"| {label} ({len(values)}) | p50 {v50:.1f} ms, p95 {v95:.1f} ms | {v50 / a50:.2f}x / {v95 / a95:.2f}x |")
        from audit.models import PendingAccessEvent
        from audit.services import chain_pending, chain_verify

        left = PendingAccessEvent.objects.count()
        chain_pending()
        ok = all(chain_verify(p).ok for p in shared)
        print(f"| queued events left when the senders stopped | {left}, chained by chain_pending; the senders' "
              f"patients' chains verify: {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()

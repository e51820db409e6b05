"""API ingest throughput: POST /api/v1/audit/events in batches of 500 on PostgreSQL, and the share
of the time spent in hash chaining.

Not a test: prints numbers. Uses its own PostgreSQL database (BENCH_INGEST_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/lightbox_bench_ingest, created if missing and emptied of
previous benchmark rows is not possible, since the log is append-only: each run adds its own
patients). Requests go through Django's test client (token check, JSON parsing, validation,
one transaction per batch). "Hash chaining" is timed by wrapping the chain steps of
``record_access`` (locking the chain head, hashing the event, advancing the head); the wrap is
measurement only, the code path is unchanged.

    .venv/bin/python benchmarks/access_log_ingest.py [--batches 20] [--patients 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/lightbox_bench_ingest"
BATCH = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--patients", type=int, default=50, help="Patients the events are spread over.")
    args = parser.parse_args()
    url = os.environ.get("BENCH_INGEST_DATABASE_URL", DEFAULT_DB)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from access_log_scale import ensure_database, setup

    ensure_database(url)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        setup(url, Path(tmp))
        from django.conf import settings
        from django.test import Client
        from django.utils import timezone

        from accounts.services import service_account_create
        from audit import services
        from audit.models import ChainHead
        from imaging.models import Patient, Study

        settings.ALLOWED_HOSTS = ["testserver"]
        run = uuid.uuid4().hex[:8]
        _account, token = service_account_create(name=f"bench-{run}", organization="Bench EHR", scopes=["audit:write"])
        patients = [Patient.objects.create(issuer="BENCH-INGEST", mrn=f"{run}-{i}", name="Bench") for i in range(args.patients)]
        for p in patients:
            Study.objects.create(patient=p, study_uid=f"2.25.{uuid.uuid4().int}", accession=f"A{p.pk}")

        chain_seconds = 0.0

        def timed(fn):
            def wrapper(*a, **k):
                nonlocal chain_seconds
                started = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    chain_seconds += time.perf_counter() - started
            return wrapper

        services._locked_chain_head = timed(services._locked_chain_head)
        services.event_hash = timed(services.event_hash)
        original_save = ChainHead.save
        ChainHead.save = timed(original_save)

        client = Client()
        now = timezone.now()
        total_seconds = 0.0
        sent = accepted = 0
        for b in range(args.batches):
            events = []
            for i in range(BATCH):
                p = patients[(b * BATCH + i) % len(patients)]
                events.append({
                    "source_event_id": f"{run}-{b}-{i}",
                    "occurred_at": (now - dt.timedelta(minutes=b * BATCH + i)).isoformat(),
                    "patient": {"issuer": p.issuer, "mrn": p.mrn},
                    "accession": f"A{p.pk}",
                    "actor": {"type": "clinician", "name": f"Dr Bench {i % 40}", "role": "Radiologist"},
                    "purpose": "treatment",
                    "action": "view",
                })
            body = json.dumps({"events": events})
            started = time.perf_counter()
            response = client.post("/api/v1/audit/events", body, content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {token}")
            total_seconds += time.perf_counter() - started
            assert response.status_code == 200, response.content[:300]
            accepted += response.json()["accepted"]
            sent += BATCH
        ChainHead.save = original_save
        print(f"Database: {url}")
        print(f"{sent:,} events in {args.batches} batches of {BATCH}, over {args.patients} patients; {accepted:,} accepted")
        print(f"| ingest | {sent / total_seconds:,.0f} events/s | {total_seconds / args.batches * 1000:.0f} ms per batch of {BATCH} |")
        print(f"| hash chaining (head lock + SHA-256 + head update) | {chain_seconds / total_seconds:.1%} of the time | "
              f"{chain_seconds / sent * 1e6:.0f} µs per event |")


if __name__ == "__main__":
    main()

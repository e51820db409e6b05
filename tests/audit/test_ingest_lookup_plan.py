"""The ingest's duplicate look-up keeps its plan when the table's statistics are stale (issue 18).

A batch asks which of its source_event_ids are already recorded. Written as
``source = 'api' AND source_event_id IN (...500 ids)``, PostgreSQL planned it from statistics
taken before a burst of reported events: a bitmap or sequential scan over the source's rows,
400-650 ms a batch in benchmarks/access_log_ingest.py until ANALYZE ran. The test makes the
statistics stale the same way (ANALYZE while the table holds only rows without an id, then many
reported events), sends a batch, and reads ``EXPLAIN (FORMAT JSON)`` of each look-up the batch
ran: every read of audit_accessevent must be a probe of the unique index with source_event_id
in its condition, not in a filter after it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.ingest import events_ingest
from audit.models import AccessEvent
from audit.services import recorded_source_ids
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

BEFORE = 50_000  # rows when statistics were taken: no source_event_id
AFTER = 100_000  # reported events added since


@pytest.fixture(autouse=True)
def _postgresql(db) -> None:
    assert connection.vendor == "postgresql", "the plans checked here are PostgreSQL's: run the suite on PostgreSQL"


def _fill(patient_id: int, count: int, *, with_ids: bool, start: int) -> None:
    sid = "'ehr/' || g" if with_ids else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO audit_accessevent (occurred_at, recorded_at, patient_id, actor_type, actor_name, actor_ref,
                organization, role, purpose, action, outcome, source, source_event_id, ip, user_agent, details, seq,
                prev_hash, hash)
            SELECT now(), now(), %s, 'clinician', 'Dr Plan', '', 'Elsewhere', '', 'treatment', 'view', 'success',
                   'api', {sid}, NULL, '', '{{}}'::jsonb, g, repeat('0', 64), repeat('0', 64)
            FROM generate_series(%s, %s + %s - 1) AS g
            """,  # noqa: S608 - constants only; values are parameters
            [patient_id, start, start, count],
        )


@pytest.fixture
def stale_statistics(db) -> None:
    patient = PatientFactory()
    _fill(patient.pk, BEFORE, with_ids=False, start=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_accessevent")
    _fill(patient.pk, AFTER, with_ids=True, start=BEFORE + 1)


def _reads(plan: dict) -> list[dict]:
    found = [plan] if plan.get("Relation Name") == "audit_accessevent" else []
    for child in plan.get("Plans", []):
        found += _reads(child)
    return found


def _plan(sql: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        raw = cursor.fetchone()[0]
    return _reads((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


def _batch() -> list[dict]:
    """500 events as a sender "ehr" sends them: 250 already recorded, 250 new."""
    patient = PatientFactory(issuer="ST-PLAN", mrn="P-1")
    when = (timezone.now() - dt.timedelta(hours=1)).isoformat()
    ids = [str(BEFORE + 1 + n * 97) for n in range(250)] + [f"new-{n}" for n in range(250)]
    return [{"source_event_id": sid, "occurred_at": when, "patient": {"issuer": patient.issuer, "mrn": patient.mrn},
             "actor": {"type": "clinician", "name": "Dr Plan"}, "purpose": "treatment", "action": "view"}
            for sid in ids]


def test_the_duplicate_lookup_probes_the_unique_index_whatever_the_statistics(stale_statistics):
    """Fails with ``source = 'api' AND source_event_id IN (...)``: its plan reads the unique index
    by source alone and filters the 100,000 reported rows (Rows Removed by Filter: 99,750)."""
    with CaptureQueriesContext(connection) as queries:
        result = events_ingest(sender="ehr", source=AccessEvent.Source.API, events=_batch(),
                               default_actor_type="clinician", default_organization="Plan EHR")

    assert (result.count("duplicate"), result.count("accepted")) == (250, 250)
    lookups = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")
               and "audit_accessevent" in q["sql"] and "source_event_id" in q["sql"]]
    assert lookups, "no duplicate look-up was run"
    for sql in lookups:
        reads = _plan(sql)
        assert reads, sql
        for read in reads:
            assert read["Node Type"] in ("Index Scan", "Index Only Scan"), read
            assert read["Index Name"] == "accessevent_source_event_unique", read
            assert "source_event_id" in read.get("Index Cond", ""), read


def test_recorded_source_ids_finds_what_is_recorded(stale_statistics):
    ids = [f"ehr/{BEFORE + 1 + n * 97}" for n in range(250)] + [f"ehr/new-{n}" for n in range(250)]

    assert recorded_source_ids(AccessEvent.Source.API, ids) == set(ids[:250])
    assert recorded_source_ids(AccessEvent.Source.IMPORT, ids) == set()
    assert recorded_source_ids(AccessEvent.Source.API, []) == set()

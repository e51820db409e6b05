"""The query shapes added for "whose actions" (issue 19, item 3) read the patient's indexes.

Others' accesses (the default list: the patient's own rows skipped) walk the (patient,
-occurred_at, -id) index; "Your own actions" (the newest before the cursor, a month counted per
day, anything older) reach the rows through the (patient, actor_type, ...) index. Read from
PostgreSQL's EXPLAIN on a table big enough for the planner to care, as in
tests/audit/test_log_filter_plans.py (whose fixture and checks these reuse).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.selectors import LogFilters, filtered_events, log_page, own_days
from tests.audit.test_log_filter_plans import _assert_indexed, _postgresql, _scans, big_history  # noqa: F401 - fixtures

OWN = 3_000  # the patient's own actions, on top of 60,000 by others


def _own_rows(patient_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_accessevent (occurred_at, recorded_at, patient_id, study_id, actor_type, actor_name,
                actor_ref, organization, role, purpose, action, outcome, source, ip, user_agent, details, seq,
                prev_hash, hash)
            SELECT ts, ts, %s, NULL, 'patient', 'Patient (self)', '', '', '', 'patient_request',
                   (ARRAY['view','download'])[1 + g %% 2], 'success', 'portal', NULL, '', '{}'::jsonb, 1000000 + g,
                   repeat('0', 64), repeat('0', 64)
            FROM (SELECT g, now() - (g * interval '1 day' * 700 / %s) AS ts FROM generate_series(0, %s - 1) AS g) AS s
            """,
            [patient_id, OWN, OWN],
        )
        cursor.execute("ANALYZE audit_accessevent")


@pytest.mark.django_db
def test_others_accesses_walk_the_patient_time_index(big_history):  # noqa: F811 - the imported fixture
    actor, _study = big_history
    _own_rows(actor.patient_id)
    events = filtered_events(actor=actor, filters=LogFilters())

    with CaptureQueriesContext(connection) as captured:
        log_page(events)
    page_sql = [q["sql"] for q in captured.captured_queries if "audit_accessevent" in q["sql"]]
    assert len(page_sql) == 1
    scans = _explain(page_sql[0])
    assert scans and all(scan["Node Type"] != "Seq Scan" for scan in scans), scans
    assert {scan.get("Index Name") for scan in scans} == {"accessevent_patient_time_id"}, scans


@pytest.mark.django_db
def test_own_actions_queries_are_index_conditions_on_actor_type(big_history):  # noqa: F811 - the imported fixture
    actor, _study = big_history
    _own_rows(actor.patient_id)
    events = filtered_events(actor=actor, filters=LogFilters(show="own"))
    _assert_indexed(events.order_by("-occurred_at", "-pk")[:1], "actor_type")

    with CaptureQueriesContext(connection) as captured:
        page = own_days(events)
    assert page.days and page.next_cursor
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(statements) == 3
    for sql in statements:
        scans = _explain(sql)
        assert scans and all(scan["Node Type"] != "Seq Scan" for scan in scans), (sql, scans)
        conditions = " ".join(scan.get("Index Cond", "") + scan.get("Recheck Cond", "") for scan in scans)
        assert "actor_type" in conditions, (sql, scans)


def _explain(sql: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _scans(plan[0]["Plan"])

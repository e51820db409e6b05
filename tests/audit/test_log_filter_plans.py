"""Every access-log filter is served by an index on the patient (issue 18, "Access-log filters").

A filter that matches little or nothing of a long history must not walk the patient's whole log
(or the whole table) to find out: PostgreSQL must reach the rows through an index whose
conditions include the filter. The test gives the planner a table big enough to care (rows
written by generate_series, then ANALYZE) and reads ``EXPLAIN (FORMAT JSON)`` of the page query
for each filter: no sequential scan of audit_accessevent, and the filtered column in an index
condition, not in a post-scan Filter.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection

from audit.models import AccessEvent
from audit.selectors import PAGE_SIZE, LogFilters, filtered_events, last_visit
from core.actor import Actor
from portal.actors import actor_for_user
from tests.audit.conftest import make_study
from tests.factories import PatientFactory, UserFactory


@pytest.fixture(autouse=True)
def _postgresql(db) -> None:
    # make test runs on PostgreSQL; these are its plans, so anything else is a failure, not a skip.
    assert connection.vendor == "postgresql", "the plans checked here are PostgreSQL's: run the suite on PostgreSQL"


BIG = 60_000  # the patient's history
OTHERS = 40_000  # everyone else's


def _fill(patient_id: int, count: int, *, varied: bool, study_id: int | None = None) -> None:
    """``count`` events over 3 years. The measured patient's are only views and searches by
    clinicians and staff for care or operations (so action=download, purpose=research,
    actor_type=researcher match nothing); the others' have every kind."""
    actions = "ARRAY['view','download','export','query']" if varied else "ARRAY['view','query']"
    actors = "ARRAY['clinician','researcher','patient','ai_vendor']" if varied else "ARRAY['clinician','staff']"
    purposes = "ARRAY['treatment','research','ai_training','legal']" if varied else "ARRAY['treatment','operations']"
    n = 4 if varied else 2
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO audit_accessevent (occurred_at, recorded_at, patient_id, study_id, actor_type, actor_name,
                actor_ref, organization, role, purpose, action, outcome, source, ip, user_agent, details, seq,
                prev_hash, hash)
            SELECT ts, ts, %s, CASE WHEN g %% 1000 = 0 THEN %s::bigint END, ({actors})[1 + g %% {n}],
                   'Dr Plan', '', CASE WHEN %s THEN 'Elsewhere ' || (g %% 7) ELSE 'St. Example Hospital' END, '',
                   ({purposes})[1 + g %% {n}], ({actions})[1 + g %% {n}],
                   'success', 'api', NULL, '', '{{}}'::jsonb, 1 + g, repeat('0', 64), repeat('0', 64)
            FROM (SELECT g, now() - (g * interval '1 day' * 1095 / %s) AS ts FROM generate_series(0, %s - 1) AS g) AS s
            """,  # noqa: S608 - constants only; values are parameters
            [patient_id, study_id, varied, count, count],
        )


@pytest.fixture
def big_history(db):
    user = UserFactory()
    patient = PatientFactory(user=user)
    study = make_study(patient)
    quiet_study = make_study(patient)  # a scan nobody looked at
    _fill(patient.pk, BIG, varied=False, study_id=study.pk)
    for _i in range(2):
        _fill(PatientFactory().pk, OTHERS // 2, varied=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_accessevent")
    return actor_for_user(user), quiet_study


def _scans(plan: dict) -> list[dict]:
    """The plan nodes that read audit_accessevent."""
    found = [plan] if plan.get("Relation Name") == "audit_accessevent" else []
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def _plan(queryset) -> list[dict]:
    return _scans(json.loads(queryset.explain(format="json"))[0]["Plan"])


def _assert_indexed(queryset, column: str) -> None:
    scans = _plan(queryset)
    assert scans, "the query does not read audit_accessevent"
    for scan in scans:
        assert scan["Node Type"] != "Seq Scan", scan
    conditions = " ".join(scan.get("Index Cond", "") + " " + scan.get("Recheck Cond", "") for scan in scans)
    assert column in conditions, f"{column} is not in an index condition: {scans}"


def _page_query(actor: Actor, filters: LogFilters):
    """The query log_page runs for the first page."""
    return filtered_events(actor=actor, filters=filters).order_by("-occurred_at", "-pk")[: PAGE_SIZE + 1]


FILTERS = {
    "action": (LogFilters(action="download"), "action"),
    "actor type": (LogFilters(actor_type="researcher"), "actor_type"),
    "own actions": (LogFilters(actor_type="patient"), "actor_type"),
    "purpose": (LogFilters(purpose="research"), "purpose"),
    "organisation": (LogFilters(organization="Elsewhere 3"), "organization"),
    "dates": (LogFilters(since=dt.date(2001, 1, 1), until=dt.date(2001, 12, 31)), "occurred_at"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_is_an_index_condition(big_history, name):
    actor, _study = big_history
    filters, column = FILTERS[name]

    _assert_indexed(_page_query(actor, filters), column)


@pytest.mark.django_db
def test_study_filter_is_an_index_condition(big_history):
    actor, quiet_study = big_history

    _assert_indexed(_page_query(actor, LogFilters(study_id=quiet_study.pk)), "study_id")


@pytest.mark.django_db
def test_filters_combined_with_dates_are_index_conditions(big_history):
    actor, _study = big_history
    filters = LogFilters(action="download", since=dt.date(2020, 1, 1), until=dt.date(2020, 12, 31))

    _assert_indexed(_page_query(actor, filters), "action")


@pytest.mark.django_db
def test_last_visit_reads_only_the_patients_own_actions(big_history):
    """"Your last visit" looks among the patient's own actions (none here), not their history."""
    actor, _study = big_history
    visits = AccessEvent.objects.for_actor(actor).filter(actor_type=AccessEvent.ActorType.PATIENT, details__page="access_log")

    _assert_indexed(visits.order_by("-occurred_at", "-pk")[:1], "actor_type")
    assert last_visit(actor=actor) is None

"""The access-log page's database work does not grow with its rows (issue 18, "Pages").

A full page of 25 events from eight organisations, three studies and four kinds of accessor, with
a visit before it (so the "new" badges and the count since then are worked out), runs the same
number of queries as a page of one event, and that number is pinned.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.selectors import PAGE_SIZE
from imaging.models import Patient
from tests.audit.conftest import clinician_view, make_study
from tests.conftest import login_verified

ORGS = [f"Hospital {i}" for i in range(8)]
KINDS = [("clinician", "treatment"), ("researcher", "research"), ("ai_vendor", "ai_inference"), ("staff", "emergency")]
# Per request: session user and device (2), the actor's patient (1); filter choices (2); the
# patient's record and the visit recorded (chain head, insert, head update, monthly count: 5);
# last visit, the page, the monthly summary, the count since the last visit, first accesses
# (5); the savepoints of the two atomic blocks inside the test's transaction (4); and the
# notification bell's unread count in the header (1, issue 19).
MAX_QUERIES = 20


def _history(patient: Patient, n: int, organizations: list[str]) -> None:
    studies = [make_study(patient) for _i in range(3)]
    for i in range(n):
        actor_type, purpose = KINDS[i % len(KINDS)]
        clinician_view(
            patient, organization=organizations[i % len(organizations)], study=studies[i % 3],
            actor_type=actor_type, purpose=purpose,
        )


def _queries(client: Client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/access-log/")
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def _visited_log(client: Client, user, n: int, organizations: list[str]) -> Client:
    record = Patient.objects.get(user=user)
    _history(record, n, organizations)
    login_verified(client, user)
    client.get("/access-log/")  # the visit before: "new since your last visit" is worked out
    _history(record, 2, organizations)
    return client


@pytest.mark.django_db
def test_a_full_page_runs_as_many_queries_as_a_page_of_one(patient, other_patient):
    full = _visited_log(Client(), patient, 40, ORGS)
    one = _visited_log(Client(), other_patient, 0, ORGS[:1])
    full_sql, one_sql = _queries(full), _queries(one)
    assert full.get("/access-log/").content.decode().count('class="access-row') == PAGE_SIZE

    assert len(full_sql) == len(one_sql), "\n".join(full_sql)
    assert len(full_sql) <= MAX_QUERIES, "\n".join(full_sql)


@pytest.mark.django_db
@pytest.mark.parametrize("data", [None, {"action": "download", "organization": "Hospital <1> & co", "study": "x"}])
def test_the_filter_selects_have_djangos_markup(patient, data):
    """audit.forms.QuickSelect draws the options in Python; the page must not change."""
    from django import forms

    from audit.forms import AccessLogFilterForm, QuickSelect

    choices = {"organization": [("Hospital <1> & co", "Hospital <1> & co"), ("B", "B")], "study": [("7", 'CT "chest"')]}
    quick = AccessLogFilterForm(data, choices=choices)
    django = AccessLogFilterForm(data, choices=choices)
    django.is_valid()
    quick.is_valid()
    names = [name for name, field in quick.fields.items() if isinstance(field.widget, QuickSelect)]
    assert len(names) == 6  # whose actions, organisation, who, why, what, scan
    for name in names:
        django.fields[name].widget = forms.Select(choices=django.fields[name].choices)

        # The same tags, attributes and escaping; only the whitespace between tags differs.
        assert str(quick[name]) == re.sub(r">\s+<", "><", str(django[name]))


@pytest.mark.django_db
def test_your_own_actions_page_runs_as_many_queries_for_a_busy_month(patient, other_patient):
    """"Your own actions" (issue 19): a month of many actions costs what a month of one does."""
    import datetime as dt

    from django.utils import timezone

    busy, quiet = Patient.objects.get(user=patient), Patient.objects.get(user=other_patient)
    start = timezone.now() - dt.timedelta(days=80)
    for i in range(90):
        clinician_view(busy, actor_type="patient", organization="", purpose="patient_request", occurred_at=start + dt.timedelta(hours=7 * i))
    clinician_view(quiet, actor_type="patient", organization="", purpose="patient_request", occurred_at=start)

    def queries(user) -> list[str]:
        client = login_verified(Client(), user)
        client.get("/access-log/")  # a visit before, as on the others' page
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/access-log/?show=own")
        assert response.status_code == 200 and response.context["own"].days
        return [q["sql"] for q in captured.captured_queries]

    busy_sql, quiet_sql = queries(patient), queries(other_patient)
    assert len(busy_sql) == len(quiet_sql), "\n".join(busy_sql)
    assert len(busy_sql) <= MAX_QUERIES, "\n".join(busy_sql)

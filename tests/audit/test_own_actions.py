"""The patient's own actions no longer flood "Who saw my scans" (issue 19, item 3).

By default the list, the headline count and the chart are others' accesses; the patient's own
actions are counted beside them and listed one line per day behind "Your own actions" (a month
per page); "Everything" lists both. The CSV follows the same choice.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import reads
from audit.models import AccessEvent
from audit.selectors import LogFilters, filtered_events, own_days
from tests.audit.conftest import clinician_view
from tests.conftest import reauthenticate
from tests.factories import actor_of

pytestmark = pytest.mark.django_db

LOG, CSV = "/access-log/", "/access-log/download.csv"


def _own(record, when: dt.datetime, action: str = "view", **extra) -> AccessEvent:
    return clinician_view(
        record, actor_type="patient", actor_name="Patient (self)", organization="", role="", purpose="patient_request",
        action=action, occurred_at=when, source="portal", **extra,
    )


def _story(record) -> None:
    """Three accesses by others; then the patient reads their scans forty times in one visit."""
    now = timezone.now()
    for i, org in enumerate(("Mercy Hospital", "Northlight AI", "St. Example Hospital")):
        clinician_view(record, organization=org, actor_name=f"Dr {i}", occurred_at=now - dt.timedelta(days=20 + i))
    for i in range(40):
        _own(record, now - dt.timedelta(minutes=i + 1))


def test_by_default_the_page_counts_and_lists_others_only(patient_client, patient):
    record = patient.patient
    _story(record)

    response = patient_client.get(LOG)

    html = response.content.decode()
    rows = response.context["rows"]
    assert [r.event.actor_type for r in rows] == ["clinician"] * 3
    summary = response.context["summary"]
    assert summary.total_12m == 3
    assert summary.own_12m == 41  # the forty reads and this visit
    assert '<dd id="others-total">3</dd>' in html
    assert "41 actions of your own" in html
    assert "patient" not in summary.series
    assert "bar-patient" not in str(response.context["chart"]["bars_svg"])
    assert "You viewed" not in html


def test_your_own_actions_one_line_per_day(patient_client, patient):
    record = patient.patient
    today = timezone.localdate()
    noon = dt.datetime.combine(today, dt.time(12), timezone.get_current_timezone())
    clinician_view(record, actor_name="Dr Other", occurred_at=noon - dt.timedelta(days=1))
    for i in range(5):
        _own(record, noon - dt.timedelta(minutes=i))
    _own(record, noon - dt.timedelta(minutes=9), action="download")
    _own(record, noon - dt.timedelta(days=1))

    response = patient_client.get(LOG, {"show": "own"})

    assert response.context["rows"] == []
    days = response.context["own"].days
    first_of_month = today.replace(day=1)
    expected = [(today, [("Viewed", 6), ("Downloaded", 1)])]  # this visit is a view today too
    if today - dt.timedelta(days=1) >= first_of_month:
        expected.append((today - dt.timedelta(days=1), [("Viewed", 1)]))
    assert [(d.day, d.counts) for d in days] == expected
    html = response.content.decode()
    assert html.count('class="own-day card"') == len(expected)
    assert "Viewed 6 times · Downloaded once" in html
    assert "Dr Other" not in html
    assert 'aria-current="page">Your own actions' in html


def test_own_actions_are_grouped_by_the_patients_own_day(patient):
    record = patient.patient
    # 23:30 UTC on 3 December is 12:30 on 4 December in Auckland.
    late = dt.datetime(2026, 12, 3, 23, 30, tzinfo=dt.UTC)
    _own(record, late)
    events = filtered_events(actor=actor_of(patient), filters=LogFilters(show="own"))
    with timezone.override(zoneinfo.ZoneInfo("Pacific/Auckland")):
        auckland = own_days(events.filter(occurred_at__lte=late))
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        utc = own_days(events.filter(occurred_at__lte=late))
    assert [d.day for d in auckland.days] == [dt.date(2026, 12, 4)]
    assert [d.day for d in utc.days] == [dt.date(2026, 12, 3)]


def test_own_actions_page_by_month_and_skip_empty_months(patient):
    record = patient.patient
    tz = timezone.get_current_timezone()
    for day in (dt.date(2025, 6, 3), dt.date(2025, 6, 20), dt.date(2025, 9, 9)):
        _own(record, dt.datetime.combine(day, dt.time(10), tz))
    events = filtered_events(actor=actor_of(patient), filters=LogFilters(show="own"))

    first = own_days(events)
    assert first.month == dt.date(2025, 9, 1) and first.is_first
    assert [d.day for d in first.days] == [dt.date(2025, 9, 9)]
    second = own_days(events, before=first.next_cursor)
    assert second.month == dt.date(2025, 6, 1) and not second.is_first  # July and August are skipped
    assert [d.day for d in second.days] == [dt.date(2025, 6, 20), dt.date(2025, 6, 3)]
    assert second.next_cursor is None
    assert own_days(events, before="not a date").month == dt.date(2025, 9, 1)


def test_the_own_actions_page_costs_the_same_for_a_busy_month(patient):
    record = patient.patient
    tz = timezone.get_current_timezone()
    start = dt.datetime.combine(dt.date(2025, 3, 1), dt.time(8), tz)
    _own(record, start - dt.timedelta(days=40))
    events = filtered_events(actor=actor_of(patient), filters=LogFilters(show="own"))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            own_days(events)
        return len(captured)

    quiet = queries()
    for i in range(60):
        _own(record, start + dt.timedelta(hours=11 * i))
    assert queries() == quiet == 3


def test_everything_lists_both(patient_client, patient):
    record = patient.patient
    _story(record)
    response = patient_client.get(LOG, {"show": "all"})
    assert {r.event.actor_type for r in response.context["rows"]} == {"patient"}  # the 25 newest are the reads
    older = patient_client.get(LOG, {"show": "all", "before": response.context["page"].next_cursor})
    assert {r.event.actor_type for r in older.context["rows"]} == {"patient", "clinician"}


def test_the_csv_follows_whose_actions(patient_client, patient):
    record = patient.patient
    _story(record)
    reauthenticate(patient_client)

    def kinds(**params) -> list[str]:
        response = patient_client.get(CSV, params)
        text = b"".join(response.streaming_content).decode("utf-8-sig")
        return [row["actor_type"] for row in csv.DictReader(io.StringIO(text))]

    assert kinds() == ["Clinician"] * 3
    assert set(kinds(show="own")) == {"Patient"} and len(kinds(show="own")) >= 40
    assert set(kinds(show="all")) == {"Patient", "Clinician"}


def test_new_since_last_visit_still_counts_others_only(patient_client, patient):
    record = patient.patient
    patient_client.get(LOG)
    clinician_view(record, organization="Mercy Hospital")
    _own(record, timezone.now())
    response = patient_client.get(LOG)
    assert response.context["summary"].new_since_visit == 1


def test_a_crafted_whose_value_is_refused(patient_client, patient):
    response = patient_client.get(LOG, {"show": "everyone's"})
    assert response.status_code == 200
    assert "show" in response.context["form"].errors


def test_the_audited_read_records_one_visit_in_every_mode(patient):
    record = patient.patient
    for show in ("", "own", "all"):
        before = AccessEvent.objects.filter(patient=record).count()
        reads.access_log_open(actor=actor_of(patient), filters=LogFilters(show=show))
        assert AccessEvent.objects.filter(patient=record).count() == before + 1

"""The patient's access log page, CSV download and email preferences."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from audit.models import AccessEvent, NotificationPreference
from audit.selectors import PAGE_SIZE, event_list
from tests.audit.conftest import clinician_view, make_study
from tests.conftest import login_verified, reauthenticate
from tests.factories import PASSWORD, actor_of

pytestmark = pytest.mark.django_db

LOG, CSV, PREFS = "/access-log/", "/access-log/download.csv", "/access-log/notifications/"


def ago(**kwargs) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kwargs)


@pytest.fixture
def record(patient):
    return patient.patient


@pytest.mark.parametrize("url", [LOG, CSV, PREFS])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("url", [LOG, CSV, PREFS])
def test_password_only_is_sent_to_second_factor(password_only_client, url):
    response = password_only_client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa/")


@pytest.mark.parametrize(("url", "method"), [(LOG, "post"), (CSV, "post"), (PREFS, "put"), (LOG, "delete")])
def test_wrong_method(patient_client, url, method):
    assert getattr(patient_client, method)(url).status_code == 405


def test_the_log_in_plain_language_newest_first(patient_client, record):
    study = make_study(record)
    study.description = "CT chest"
    study.save()
    clinician_view(record, study=study, actor_name="Dr Jane Roe", role="Radiologist", organization="Mercy Hospital",
                   occurred_at=ago(days=3))
    clinician_view(record, actor_type="ai_vendor", actor_name="Triage model", organization="Northlight AI", role="",
                   purpose="ai_inference", occurred_at=ago(days=1))
    response = patient_client.get(LOG)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "Dr Jane Roe, Radiologist at Mercy Hospital viewed your CT chest for your care." in html
    assert "Triage model at Northlight AI viewed your imaging records for analysis by an AI system." in html
    assert html.index("Triage model") < html.index("Dr Jane Roe")
    assert "First access by this organisation" in html and "AI use" in html
    summary = response.context["summary"]
    assert summary.organizations_12m == 2 and summary.ai_vendor_12m == 1


def test_reading_the_log_is_logged_and_new_since_last_visit(patient_client, record):
    patient_client.get(LOG)
    visit = AccessEvent.objects.filter(patient=record).latest("seq")
    assert (visit.actor_type, visit.action, visit.details) == ("patient", "view", {"page": "access_log"})
    clinician_view(record, organization="Mercy Hospital")
    response = patient_client.get(LOG)
    assert response.context["summary"].new_since_visit == 1
    assert "1 new access by others since your last visit" in response.content.decode()
    assert AccessEvent.objects.filter(patient=record, details__page="access_log").count() == 2


def test_another_patients_events_never_show(patient_client, record, other_patient):
    clinician_view(other_patient.patient, actor_name="Dr Secret", organization="Elsewhere Clinic")
    clinician_view(record, actor_name="Dr Mine")
    html = patient_client.get(LOG).content.decode()
    assert "Dr Mine" in html and "Dr Secret" not in html and "Elsewhere Clinic" not in html
    assert not AccessEvent.objects.filter(patient=other_patient.patient, actor_type="patient").exists()


def test_another_patients_study_filter_is_refused(patient_client, record, other_patient):
    theirs = make_study(other_patient.patient)
    response = patient_client.get(LOG, {"study": theirs.pk})
    assert response.status_code == 200
    assert "study" in response.context["form"].errors


def test_filters(patient_client, record):
    study = make_study(record)
    clinician_view(record, organization="Mercy Hospital", actor_name="Dr Mercy", occurred_at=ago(days=40))
    clinician_view(record, organization="St. Example Hospital", actor_name="Dr Example", study=study, occurred_at=ago(days=10))
    clinician_view(record, organization="Research Net", actor_type="researcher", actor_name="Broker", purpose="research",
                   action="export", occurred_at=ago(days=5))

    def names(**params):
        rows = patient_client.get(LOG, params).context["rows"]
        return [r.event.actor_name for r in rows if r.event.actor_type != "patient"]

    assert names(organization="Mercy Hospital") == ["Dr Mercy"]
    assert names(actor_type="researcher") == ["Broker"]
    assert names(purpose="research", action="export") == ["Broker"]
    assert names(study=study.pk) == ["Dr Example"]
    assert names(since=(ago(days=20)).date().isoformat()) == ["Broker", "Dr Example"]
    assert names(until=(ago(days=20)).date().isoformat()) == ["Dr Mercy"]
    response = patient_client.get(LOG, {"since": "2026-02-02", "until": "2026-01-01"})
    assert "until" in response.context["form"].errors


def test_keyset_pagination_walks_every_event_once(patient_client, record):
    start = ago(days=100)
    for i in range(PAGE_SIZE * 2 + 3):
        # Pairs share a timestamp, so the id tie-break matters.
        clinician_view(record, actor_name=f"Dr {i}", occurred_at=start + dt.timedelta(hours=i // 2))
    seen, url, pages = [], LOG, 0
    while url:
        response = patient_client.get(url)
        seen += [r.event.pk for r in response.context["rows"]]
        cursor = response.context["page"].next_cursor
        url = f"{LOG}?before={cursor}" if cursor else None
        pages += 1
    clinician_events = list(AccessEvent.objects.filter(patient=record, actor_type="clinician").order_by("-occurred_at", "-pk").values_list("pk", flat=True))
    assert [pk for pk in seen if pk in set(clinician_events)] == clinician_events
    assert len(seen) == len(set(seen))
    assert pages == 3


def test_bad_cursor_is_ignored(patient_client, record):
    clinician_view(record)
    assert patient_client.get(LOG, {"before": "x' OR 1=1"}).status_code == 200
    assert patient_client.get(LOG, {"before": "99999999999999999999.1"}).status_code == 200


def test_flag_link_only_when_flags_exist(patient_client, record):
    from django.urls import NoReverseMatch, reverse

    event = clinician_view(record)
    html = patient_client.get(LOG).content.decode()
    try:
        flag_url = reverse("flags-new")
    except NoReverseMatch:
        assert "Flag this access" not in html
    else:
        assert f"{flag_url}?event={event.pk}" in html


def test_officer_without_a_record_sees_no_log(client, officer):
    login_verified(client, officer)
    response = client.get(LOG)
    assert response.status_code == 200
    assert "not linked to a patient record" in response.content.decode()
    assert not AccessEvent.objects.exists()


# --- CSV -------------------------------------------------------------------------------------


def test_csv_needs_recent_reauthentication_and_then_returns_to_the_same_filtered_log(patient_client, record):
    response = patient_client.get(CSV + "?actor_type=patient")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/reauthenticate/?next=%2Faccess-log%2F%3Factor_type%3Dpatient%26download%3Dready"
    assert not AccessEvent.objects.filter(action="download").exists()
    # After the password the patient lands on the log (not in the file, which would leave the
    # password page on screen), told to download now; the CSV link keeps the filter only.
    response = patient_client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/access-log/?actor_type=patient&download=ready"
    page = patient_client.get(response["Location"])
    assert "Your password is confirmed" in page.content.decode()
    assert page.context["query"] == "actor_type=patient"
    assert "Your password is confirmed" not in patient_client.get(LOG).content.decode()
    assert patient_client.get(CSV + "?actor_type=patient")["Content-Type"].startswith("text/csv")


def test_csv_download_is_filtered_logged_and_safe(patient_client, record):
    clinician_view(record, actor_name="=HYPERLINK(\"http://evil\")", organization="Mercy Hospital")
    clinician_view(record, actor_name="Dr Other", organization="Other Org")
    reauthenticate(patient_client)
    response = patient_client.get(CSV, {"organization": "Mercy Hospital"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["organization"] for r in rows] == ["Mercy Hospital"]
    assert rows[0]["actor_name"].startswith("'=")
    download = AccessEvent.objects.filter(patient=record, action="download").get()
    assert download.details == {"page": "access_log_csv", "filtered": True}


# --- Preferences ------------------------------------------------------------------------------


def test_preferences_defaults_and_save(patient_client, patient):
    form = patient_client.get(PREFS).context["form"]
    assert form.initial["new_organization"] is True and form.initial["ai_or_research"] is True
    assert form.initial["emergency"] is False and form.initial["downloads"] is False
    response = patient_client.post(PREFS, {"emergency": "on", "downloads": "on"})
    assert response.status_code == 302
    pref = NotificationPreference.objects.get(user=patient)
    assert (pref.new_organization, pref.ai_or_research, pref.emergency, pref.downloads) == (False, False, True, True)


def test_preferences_ignore_other_fields(patient_client, patient, other_patient):
    patient_client.post(PREFS, {"user": other_patient.pk, "emergency": "on"})
    assert NotificationPreference.objects.get().user == patient


# --- The selector other apps use --------------------------------------------------------------


def test_event_list_narrows_to_the_actor(patient, other_patient, officer):
    mine = clinician_view(patient.patient, purpose="research", organization="Research Net", occurred_at=ago(days=3))
    clinician_view(patient.patient, purpose="treatment", occurred_at=ago(days=2))
    clinician_view(other_patient.patient, purpose="research", organization="Research Net")
    actor = actor_of(patient)
    assert list(event_list(actor=actor, purposes=["research"])) == [mine]
    assert list(event_list(actor=actor, organization="Research Net", until=ago(days=1))) == [mine]
    assert event_list(actor=actor, since=ago(days=1)).count() == 0
    assert event_list(actor=actor_of(officer)).count() == 0


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (8, 10), (13, 20), (21, 50), (99, 100), (101, 200)])
def test_chart_axis_top_is_the_next_nice_number(value, top):
    from audit.charts import _nice_max

    assert _nice_max(value) == top

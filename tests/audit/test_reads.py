"""The audited reads of the access log (``audit.reads``) and the selectors under them.

Each read writes exactly one access event, in the transaction of the read, and none when it
answers 404; the selectors reach only the actor's own records (an officer's none until a flag
narrows them), docs/security.md §9 and §13.
"""

from __future__ import annotations

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.utils import timezone

from audit import reads, selectors
from audit.models import AccessEvent
from audit.selectors import LogFilters, event_get, event_list, filter_choices, last_visit, log_summary
from tests.audit.conftest import clinician_view, make_study
from tests.conftest import login_verified, reauthenticate
from tests.factories import UserFactory, actor_of

pytestmark = pytest.mark.django_db

CSV = "/access-log/download.csv"


def _open(actor):
    return reads.access_log_open(actor=actor)


def _download(actor):
    return reads.access_log_download(actor=actor, filters=LogFilters())


# --- (a) exactly one event per read, none on a 404 ----------------------------------------------


def test_opening_the_log_records_one_visit_and_returns_it(patient):
    record = patient.patient
    clinician_view(record)
    before = AccessEvent.objects.filter(patient=record).count()

    log = reads.access_log_open(actor=actor_of(patient))

    assert AccessEvent.objects.filter(patient=record).count() == before + 1
    visit = AccessEvent.objects.filter(patient=record).latest("seq")
    assert log.visit == visit and log.patient == record
    assert (visit.actor_type, visit.actor_name, visit.action, visit.details) == (
        "patient", "Patient (self)", "view", {"page": "access_log"}
    )
    # By default the page lists others' accesses (issue 19); the visit is among the patient's
    # own actions, today's line counting it. "Your last visit" is the one before it.
    assert [row.event.actor_type for row in log.rows] == ["clinician"]
    assert log.last_visit is None
    own_view = reads.access_log_open(actor=actor_of(patient), filters=LogFilters(show="own"))
    assert [(day.day, day.counts) for day in own_view.own.days] == [(timezone.localdate(visit.occurred_at), [("Viewed", 2)])]
    assert AccessEvent.objects.filter(patient=record).count() == before + 2  # that look was a visit too
    again = reads.access_log_open(actor=actor_of(patient))
    assert again.last_visit == own_view.visit.occurred_at


def test_downloading_the_log_records_one_download_and_returns_the_filtered_events(patient):
    record = patient.patient
    mercy = clinician_view(record, organization="Mercy Hospital")
    clinician_view(record, organization="Other Org")

    events = reads.access_log_download(actor=actor_of(patient), filters=LogFilters(organization="Mercy Hospital"))

    assert list(events) == [mercy]
    download = AccessEvent.objects.get(patient=record, action="download")
    assert (download.actor_type, download.details) == ("patient", {"page": "access_log_csv", "filtered": True})
    reads.access_log_download(actor=actor_of(patient), filters=LogFilters())
    assert AccessEvent.objects.filter(patient=record, action="download").latest("seq").details == {
        "page": "access_log_csv", "filtered": False
    }
    assert AccessEvent.objects.filter(patient=record, action="download").count() == 2


def test_the_download_checks_reauthentication_itself(patient):
    """A caller that skipped the view's password check is still refused, and nothing is logged."""
    with pytest.raises(ReauthenticationRequired):
        reads.access_log_download(actor=actor_of(patient, reauthenticated=False), filters=LogFilters())
    assert not AccessEvent.objects.exists()


@pytest.mark.parametrize("read", [_open, _download], ids=["open", "download"])
@pytest.mark.parametrize("who", ["officer", "administrator", "anonymous"])
def test_an_account_without_its_own_record_gets_404_and_nothing_is_recorded(patient, officer, read, who):
    clinician_view(patient.patient)
    user = {
        "officer": officer,
        "administrator": UserFactory(role="administrator", is_staff=True),
        "anonymous": AnonymousUser(),
    }[who]
    before = AccessEvent.objects.count()

    with pytest.raises(Http404):
        read(actor_of(user))

    assert AccessEvent.objects.count() == before


def test_a_read_that_fails_after_recording_takes_its_event_with_it(patient, monkeypatch):
    """Select and record are one transaction: no visit is logged for a page that was not shown."""
    clinician_view(patient.patient)
    before = AccessEvent.objects.count()

    def broken(**kwargs):
        raise RuntimeError("the summary could not be read")

    monkeypatch.setattr(selectors, "log_summary", broken)
    with pytest.raises(RuntimeError):
        reads.access_log_open(actor=actor_of(patient))

    assert AccessEvent.objects.count() == before


# --- (b) another patient's event ---------------------------------------------------------------


def test_another_patients_event_is_404_from_the_selector_like_a_missing_one(patient, other_patient):
    mine = clinician_view(patient.patient)
    theirs = clinician_view(other_patient.patient)
    actor = actor_of(patient)

    assert event_get(actor=actor, event_id=mine.pk) == mine
    with pytest.raises(Http404):
        event_get(actor=actor, event_id=theirs.pk)
    with pytest.raises(Http404):
        event_get(actor=actor, event_id=theirs.pk + 1000)
    assert list(event_list(actor=actor)) == [mine]


def test_another_patients_events_are_never_in_the_download(client, patient, other_patient):
    clinician_view(patient.patient, actor_name="Dr Mine")
    clinician_view(other_patient.patient, actor_name="Dr Secret", organization="Elsewhere Clinic")
    login_verified(client, patient)
    reauthenticate(client)

    text = b"".join(client.get(CSV).streaming_content).decode("utf-8-sig")

    assert "Dr Mine" in text and "Dr Secret" not in text and "Elsewhere Clinic" not in text
    assert not AccessEvent.objects.filter(patient=other_patient.patient, actor_type="patient").exists()


# --- (c) an officer who is not investigating ---------------------------------------------------


def test_an_officer_not_investigating_reaches_no_event(patient, officer):
    record = patient.patient
    make_study(record)
    event = clinician_view(record, organization="Mercy Hospital")
    actor = actor_of(officer)

    assert not event_list(actor=actor).exists()
    with pytest.raises(Http404):
        event_get(actor=actor, event_id=event.pk)
    assert filter_choices(actor=actor) == {"organization": [], "study": []}
    assert log_summary(actor=actor, last_visit_at=None).total_12m == 0
    assert last_visit(actor=actor) is None
    # Narrowed to a flag's patient, the officer reaches that patient's events and no one else's.
    assert list(event_list(actor=actor.investigating(record.pk))) == [event]


def test_an_officer_gets_404_for_the_download(client, officer, patient):
    clinician_view(patient.patient)
    login_verified(client, officer)
    reauthenticate(client)
    before = AccessEvent.objects.count()

    assert client.get(CSV).status_code == 404
    assert AccessEvent.objects.count() == before

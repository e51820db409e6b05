"""Property-based tests of every flags form: the patient's report and reply, and the privacy
office's note, message, status, assignment, incident and queue filters.

Properties: no input gets a server error; a refused input writes nothing (no flag, no timeline
entry, no incident or notice) and says why (form errors on the page, or an error message after
the redirect); an accepted one writes and says so; the posted fields a form does not own
(patient, status, owner...) change nothing (docs/security.md §10).
"""

from __future__ import annotations

import pytest
from django.contrib.messages import constants, get_messages
from hypothesis import example, given
from hypothesis import strategies as st

from flags.demo import build_demo_flag
from flags.forms import FlagForm
from flags.models import Flag, FlagEvent, Incident
from notices.models import Notice
from tests.flags.conftest import make_event, make_study
from tests.hypothesis_profiles import error_texts, example_scope, form_data, text

pytestmark = pytest.mark.django_db


def writes() -> int:
    return Flag.objects.count() + FlagEvent.objects.count() + Incident.objects.count() + Notice.objects.count()


def levels(response) -> set[int]:
    return {m.level for m in get_messages(response.wsgi_request)}


def post(client, url: str, body: dict):
    """POST with no messages left over from an earlier example (the redirect is not followed,
    so they would still sit in the cookie)."""
    client.cookies.pop("messages", None)
    return client.post(url, body)


@pytest.fixture
def targets(patient, other_patient):
    """The patient's study and access-log entry, and another patient's of each."""
    study = make_study(patient.patient)
    theirs = make_study(other_patient.patient)
    return {
        "study": [study.pk, theirs.pk],
        "event": [make_event(patient.patient, study=study).pk, make_event(other_patient.patient, study=theirs).pk],
    }


@given(data=st.data())
@example(data=None)
def test_any_report_is_filed_or_refused_with_reasons(patient_client, patient, targets, data):
    if data is None:
        kind, target, body = "study", "²", {"category": "not_my_scan", "description": "x"}
    else:
        kind = data.draw(st.sampled_from(["study", "event"]))
        target = data.draw(st.one_of(st.sampled_from([str(pk) for pk in targets[kind]]), text()))
        body = data.draw(form_data(["category", "description"], extra=("patient", "status", "assignee", "study")))
    with example_scope():
        before = Flag.objects.count()
        try:
            response = patient_client.post(f"/flags/new/?{kind}={target}" if target else "/flags/new/", body)
        except UnicodeEncodeError:
            return
        if response.status_code == 302:
            flag = Flag.objects.latest("pk")
            assert Flag.objects.count() == before + 1
            assert flag.patient == patient.patient and flag.status == Flag.Status.OPEN and flag.assignee is None
            assert (flag.study_id or flag.access_event_id) == int(target)
            return
        assert Flag.objects.count() == before, "a refused report was filed"
        assert response.status_code in (200, 400, 404), response.status_code
        if response.status_code == 400:
            form = response.context["form"]
            assert isinstance(form, FlagForm) and form.errors
            html = response.content.decode()
            for error in error_texts(form):
                assert error in html, error


@pytest.fixture
def held_flag(patient, officer):
    """A flag on the patient's AI-vendor access, claimed by ``officer``, waiting for the patient."""
    make_event(patient.patient)
    return build_demo_flag(patient.patient, officer)


def _writes_iff_success(response, before: int) -> None:
    assert response.status_code == 302, response.status_code
    seen = levels(response)
    if writes() == before:
        assert constants.ERROR in seen, "nothing written and no reason given"
    else:
        assert constants.SUCCESS in seen and constants.ERROR not in seen, seen


@given(body=form_data(["text"]))
@example(body={"text": "a\x00b"})
def test_any_reply_is_sent_or_refused_with_a_reason(patient_client, held_flag, body):
    with example_scope():
        before = writes()
        _writes_iff_success(post(patient_client, f"/flags/{held_flag.pk}/reply/", body), before)


OFFICE_FORMS = {
    "note": ["text"],
    "message": ["text", "ask_for_info"],
    "status": ["status", "resolution"],
    "assign": ["assignee"],
    "incident": ["organization", "limit_to_study", "window_start", "window_end", "subject", "message"],
}


@pytest.mark.parametrize("action", sorted(OFFICE_FORMS))
@given(data=st.data())
@example(data=None)
def test_any_office_action_is_done_or_refused_with_a_reason(officer_client, officer, second_officer, held_flag, action, data):
    if data is None and action != "incident":
        return
    if data is None:
        body = {"organization": "Acme", "window_start": "2026-01-01T00:00", "window_end": "0001-01-01T00:00",
                "subject": "s", "message": "m"}
    else:
        body = data.draw(form_data(OFFICE_FORMS[action], extra=("patient", "flag", "assignee", "status")))
        if action == "assign" and data.draw(st.booleans()):
            body["assignee"] = str(data.draw(st.sampled_from([officer.pk, second_officer.pk, held_flag.patient.user_id])))
        if action == "status" and data.draw(st.booleans()):
            body["status"] = data.draw(st.sampled_from(Flag.Status.values))
    with example_scope():
        before = writes()
        response = post(officer_client, f"/privacy-office/flags/{held_flag.pk}/{action}/", body)
        if action == "assign" and response.status_code == 404:
            return  # assigning needs the flag in the queue view of this officer
        _writes_iff_success(response, before)
        held_flag.refresh_from_db()
        assert held_flag.patient.user_id is not None and held_flag.assignee_id in (officer.pk, second_officer.pk)


plain_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=4000).filter(str.strip)


@given(text=plain_text, route=st.sampled_from(["reply", "note", "message"]))
def test_any_plain_text_is_accepted(patient_client, officer_client, held_flag, text, route):
    client, url = (patient_client, f"/flags/{held_flag.pk}/reply/") if route == "reply" else (
        officer_client, f"/privacy-office/flags/{held_flag.pk}/{route}/")
    with example_scope():
        last = FlagEvent.objects.latest("pk").pk
        response = post(client, url, {"text": text})
        assert constants.SUCCESS in levels(response), [m.message for m in get_messages(response.wsgi_request)]
        assert FlagEvent.objects.filter(pk__gt=last, text=text.strip()).exists()


@given(params=form_data(["status", "category", "assignee", "age", "overdue", "sort"], extra=("page",)))
@example(params={"age": "١", "page": "-1"})
def test_queue_filters_never_fail(officer_client, held_flag, params):
    with example_scope():
        assert officer_client.get("/privacy-office/", params).status_code == 200

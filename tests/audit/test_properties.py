"""Property-based tests of the access log's inputs: the events API (JSON batches and FHIR
AuditEvents) and the patient's filter and notification forms, with malformed input.

Properties: no body, however broken, gets a server error; a refused body is a JSON error with a
code and a message and writes nothing; in an answered batch every event is accepted (one
AccessEvent each, nothing else), a duplicate, or rejected with a reason; well-formed events are
all accepted. The forms never fail and show their errors.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

from audit import ingest
from audit.forms import AccessLogFilterForm
from audit.models import AccessEvent, NotificationPreference
from tests.audit.test_api import URL, audit_event, event, post, record, token  # noqa: F401 - fixtures
from tests.conftest import reauthenticate
from tests.hypothesis_profiles import error_texts, example_scope, form_data, json_value

pytestmark = pytest.mark.django_db

CONTENT_TYPES = ["application/json", "application/fhir+json", "text/plain", "application/x-www-form-urlencoded", ""]


def _paths(doc, parent=None, key=None):
    """(container, key) for every value inside ``doc``."""
    if parent is not None:
        yield parent, key
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, doc, k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, doc, i)


@st.composite
def mutated(draw, base: dict, changes: int = 3) -> dict:
    """``base`` with a few values anywhere inside replaced by any JSON, or removed."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, changes))):
        paths = list(_paths(doc))
        if not paths:
            break
        parent, key = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            parent[key] = draw(json_value(max_leaves=6))
        else:
            del parent[key]
    return doc


@pytest.fixture
def api_token(request) -> str:
    """A token with audit:write, and the patient (STEXAMPLE/MRN-API-1, study 1.2.3.4.5) the
    events name: the events API tests' own fixtures."""
    request.getfixturevalue("record")
    return request.getfixturevalue("token")


def check_answer(response, before: int) -> dict | None:
    """The API's contract for any request: a result or a clean JSON error, never a 500."""
    assert response.status_code in (200, 400, 413, 415), (response.status_code, response.content[:300])
    body = response.json()
    added = AccessEvent.objects.count() - before
    if response.status_code != 200:
        assert body["error"] and body["message"], body
        assert added == 0, "a refused request wrote access events"
        return None
    assert body["accepted"] + body["duplicate"] + body["rejected"] == len(body["results"])
    assert added == body["accepted"], f"{added} events written for {body['accepted']} accepted"
    for outcome in body["results"]:
        assert outcome["status"] in ("accepted", "duplicate", "rejected"), outcome
        if outcome["status"] == "rejected":
            assert outcome["reason"], outcome
        if outcome["status"] == "accepted":
            assert AccessEvent.objects.filter(pk=outcome["id"]).exists()
    return body


@given(body=st.one_of(json_value(), st.binary(max_size=200)), content_type=st.sampled_from(CONTENT_TYPES))
@example(body=b"\xff\xfe{", content_type="application/json")
@example(body=b'{"events": [' + b"[" * 5000 + b"]" * 5000 + b"]}", content_type="application/json")
@example(body={"resourceType": "Bundle", "entry": 5}, content_type="application/fhir+json")
@example(body={"resourceType": []}, content_type="application/json")
@example(body={"resourceType": "AuditEvent", "entity": "x", "agent": 1, "period": "x"}, content_type="application/fhir+json")
def test_any_body_gets_an_answer_or_a_clean_refusal(client, api_token, body, content_type):
    data = body if isinstance(body, bytes) else json.dumps(body)
    with example_scope():
        before = AccessEvent.objects.count()
        response = client.post(URL, data=data, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {api_token}")
        check_answer(response, before)


@given(events=st.lists(mutated(event()), min_size=1, max_size=4))
@example(events=[{**event(), "source_event_id": "a\x00b"}])
@example(events=[{**event(), "patient": {"issuer": "STEXAMPLE\x00", "mrn": "MRN-API-1"}}])
@example(events=[{**event(), "actor": {"name": "Dr\x00Evil", "organization": "\x00"}}])
@example(events=[{**event(), "occurred_at": "2026-03-03T10:14:00+99:00"}])
@example(events=[{**event(), "occurred_at": "0001-01-01T00:00:00-01:00"}])
def test_batch_events_with_broken_fields(client, api_token, events):
    with example_scope():
        before = AccessEvent.objects.count()
        check_answer(post(client, {"events": events}, api_token), before)


@given(resource=mutated(audit_event(), changes=4), bundle=st.booleans())
@example(resource={**audit_event(), "entity": [{"what": {"identifier": {"system": "STEXAMPLE", "value": "MRN-API-1"}, "reference": "Patient/1"}, "type": "1"}]}, bundle=False)
@example(resource={**audit_event(), "agent": [{"who": "Dr Roe", "requestor": True}]}, bundle=False)
@example(resource={**audit_event(), "period": "2026"}, bundle=True)
@example(resource={**audit_event(), "source": {"observer": "x"}, "agent": [{"who": {"display": "A"}}]}, bundle=False)
def test_fhir_audit_events_with_broken_fields(client, api_token, resource, bundle):
    body = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]} if bundle else resource
    with example_scope():
        before = AccessEvent.objects.count()
        check_answer(post(client, body, api_token, content_type="application/fhir+json"), before)


def _valid_event(draw_id: str, purpose: str, action: str, actor_type: str, name: str, hours: int) -> dict:
    return event(
        source_event_id=draw_id, purpose=purpose, action=action,
        occurred_at=(timezone.now() - dt.timedelta(hours=hours)).isoformat(),
        actor={"type": actor_type, "name": name, "organization": "Mercy Hospital"},
    )


printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)
valid_events = st.lists(
    st.builds(
        _valid_event,
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40),
        st.sampled_from(AccessEvent.Purpose.values), st.sampled_from(AccessEvent.Action.values),
        st.sampled_from(ingest.ACTOR_TYPES), printable, st.integers(0, 24 * 365 * 20),
    ),
    min_size=1, max_size=5, unique_by=lambda e: e["source_event_id"],
)


@given(events=valid_events)
def test_well_formed_events_are_all_accepted_once(client, api_token, events):
    with example_scope():
        before = AccessEvent.objects.count()
        body = check_answer(post(client, {"events": events}, api_token), before)
        assert body["accepted"] == len(events), body
        again = check_answer(post(client, {"events": events}, api_token), before + len(events))
        assert again["duplicate"] == len(events), again


# --- The patient's forms --------------------------------------------------------------------

@pytest.fixture
def reauthenticated_client(patient_client):
    """Signed in, second factor passed and password re-entered, once for all examples (outside
    their rolled-back transactions, so the session keeps it)."""
    reauthenticate(patient_client)
    return patient_client


FILTER_FIELDS = ["since", "until", "organization", "actor_type", "purpose", "action", "study"]


@given(params=form_data(FILTER_FIELDS, extra=("before", "page", "patient")))
@example(params={"since": "0001-01-01", "until": "9999-12-31"})
@example(params={"since": "2026-03-04", "until": "2026-03-03"})
@example(params={"study": "١", "before": "x"})
def test_access_log_filters_never_fail_and_show_their_errors(reauthenticated_client, params):
    patient_client = reauthenticated_client  # the CSV download needs a recent password
    with example_scope():
        response = patient_client.get("/access-log/", params)
        assert response.status_code == 200
        form = response.context["form"]
        assert isinstance(form, AccessLogFilterForm)
        html = response.content.decode()
        for error in error_texts(form):
            assert error in html, error
        csv = patient_client.get("/access-log/download.csv", params)
        assert csv.status_code in (200, 400), csv.status_code


@given(data=form_data(["new_organization", "ai_or_research", "emergency", "downloads"]))
def test_notification_preferences_take_any_post(patient_client, patient, data):
    with example_scope():
        response = patient_client.post("/access-log/notifications/", data)
        assert response.status_code in (200, 302, 400), response.status_code
        assert NotificationPreference.objects.filter(user=patient).count() <= 1


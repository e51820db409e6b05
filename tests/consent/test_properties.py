"""Property-based tests of consent's inputs: the patient's change form, the privacy office's
record form, and the consent API's queries and cohort body, with malformed input.

Properties: nothing a browser or a client sends gets a server error; a refused form answers 400
with its errors shown and records no decision; a refused API call is a JSON error and writes no
access event, an answered one writes exactly the events it reports; a valid choice of the
patient's own is recorded once, with the receipt it redirects to.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from audit.models import AccessEvent
from consent.forms import ChangeForm, OfficeRecordForm
from consent.models import ConsentDecision, Scope
from tests.conftest import login_verified, reauthenticate
from tests.consent.conftest import make_study
from tests.hypothesis_profiles import error_texts, example_scope, form_data, json_value, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(request, patient, officer):
    """A published policy, two studies of the patient, one of another patient, and a token."""
    request.getfixturevalue("policy")
    own = [make_study(patient.patient), make_study(patient.patient)]
    other = make_study(request.getfixturevalue("other_patient").patient)
    token = request.getfixturevalue("ai_token")
    patient_client = login_verified(Client(), patient)
    reauthenticate(patient_client)  # once, outside the examples' rolled-back transactions
    officer_client = login_verified(Client(), officer)
    reauthenticate(officer_client)
    return {"own": own, "other": other, "token": token, "patient": patient_client, "officer": officer_client,
            "record": patient.patient}


def _study_values(world) -> st.SearchStrategy[str]:
    ids = [str(s.pk) for s in [*world["own"], world["other"]]]
    return st.one_of(st.sampled_from(ids), text())


def _check_form_refusal(response, form_class, decisions_before: int, body: dict) -> None:
    assert ConsentDecision.objects.count() == decisions_before, "a refused form recorded a decision"
    if not body:  # nothing posted at all (no browser does: the CSRF token is a field): the blank form
        assert response.status_code in (200, 400, 404), response.status_code
        return
    assert response.status_code in (400, 404), response.status_code
    if response.status_code == 400:
        form = response.context["form"]
        assert isinstance(form, form_class)
        html = response.content.decode()
        assert form.errors, "400 without a reason"
        for error in error_texts(form):
            assert error in html, error


@given(data=st.data(), scope=st.one_of(st.sampled_from(Scope.values), text()))
@example(data=None, scope="research")
def test_any_change_is_recorded_or_refused_with_reasons(world, data, scope):
    body = data.draw(form_data(["decision", "study"])) if data else {"decision": "granted", "study": "²"}
    if data and data.draw(st.booleans()):
        body["study"] = data.draw(_study_values(world))
    own_ids = {s.pk for s in world["own"]}
    with example_scope():
        before = ConsentDecision.objects.count()
        try:
            url = f"/consent/change/{scope}/"
            response = world["patient"].post(url, body)
        except UnicodeEncodeError:
            return  # not a URL a client can send
        if response.status_code == 302:
            decision = ConsentDecision.objects.latest("pk")
            assert ConsentDecision.objects.count() == before + 1
            assert decision.patient == world["record"] and decision.scope == scope
            assert decision.study_id is None or decision.study_id in own_ids
            assert response["Location"] == f"/consent/receipts/{decision.receipt_id}/"
        else:
            _check_form_refusal(response, ChangeForm, before, body)


@given(decision=st.sampled_from(ConsentDecision.Decision.values), scope=st.sampled_from(Scope.values),
       which=st.integers(-1, 1))
def test_a_valid_choice_of_ones_own_is_recorded(world, decision, scope, which):
    body = {"decision": decision}
    if which >= 0:
        body["study"] = str(world["own"][which].pk)
    with example_scope():
        before = ConsentDecision.objects.count()
        response = world["patient"].post(f"/consent/change/{scope}/", body)
        assert response.status_code == 302, response.content[:500]
        assert ConsentDecision.objects.count() == before + 1
        row = ConsentDecision.objects.latest("pk")
        assert (row.decision, row.scope) == (decision, scope)
        assert row.study_id == (world["own"][which].pk if which >= 0 else None)


OFFICE_FIELDS = ["issuer", "mrn", "scope", "decision", "channel", "study_uid", "note"]


@given(data=st.data())
def test_any_office_record_is_recorded_or_refused_with_reasons(world, data):
    body = data.draw(form_data(OFFICE_FIELDS))
    record = world["record"]
    if data.draw(st.booleans()):  # often the right patient, so the other checks are reached
        body.update(issuer=record.issuer, mrn=record.mrn)
        body["study_uid"] = data.draw(st.one_of(st.sampled_from([world["own"][0].study_uid, world["other"].study_uid, ""]), text()))
    with example_scope():
        before = ConsentDecision.objects.count()
        response = world["officer"].post("/consent/office/record/", body)
        if response.status_code == 302:
            row = ConsentDecision.objects.latest("pk")
            assert ConsentDecision.objects.count() == before + 1
            assert row.patient == record and row.channel in ("paper", "phone")
            assert row.study_id is None or row.study.patient == record
        else:
            _check_form_refusal(response, OfficeRecordForm, before, body)


# --- The consent API -------------------------------------------------------------------------


def _api_answer(response, events_before: int) -> dict:
    assert response.status_code in (200, 400, 404, 413, 415), (response.status_code, response.content[:300])
    body = response.json()
    if response.status_code != 200:
        assert body["error"] and body["message"], body
        assert AccessEvent.objects.count() == events_before, "a refused query was logged"
    return body


@given(params=form_data(["issuer", "mrn", "study_uid", "scope"], extra=("patient",)), known=st.booleans())
@example(params={"issuer": "STEXAMPLE\x00", "mrn": "x", "scope": "research"}, known=False)
@example(params={"study_uid": "1.2\x00", "scope": "research"}, known=True)
@example(params={"patient": "a\x00|b"}, known=False)
def test_check_and_fhir_queries_never_fail(client, world, params, known):
    record = world["record"]
    if known:
        params = {**params, "issuer": record.issuer, "mrn": record.mrn}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['token']}"}
    with example_scope():
        before = AccessEvent.objects.count()
        body = _api_answer(client.get("/api/v1/consent/check", params, **auth), before)
        if "allowed" in body:
            assert AccessEvent.objects.count() == before + 1  # every answer is in the patient's log
        before = AccessEvent.objects.count()
        patient = params.get("patient") if not known else f"{record.issuer}|{record.mrn}"
        _api_answer(client.get("/api/v1/fhir/Consent", {"patient": patient} if patient else {}, **auth), before)


@given(body=st.one_of(json_value(), st.fixed_dictionaries({"scope": st.one_of(st.sampled_from(Scope.values), json_value()),
                                                          "study_uids": st.one_of(st.lists(text(), max_size=5), json_value())})))
@example(body={"scope": "research", "study_uids": ["1.2.3\x00"]})
def test_cohort_bodies_never_fail(client, world, body):
    with example_scope():
        before = AccessEvent.objects.count()
        answer = _api_answer(
            client.post("/api/v1/consent/cohort", json.dumps(body), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {world['token']}"),
            before,
        )
        if "permitted" in answer:
            asked = set(body["study_uids"])
            assert set(answer["permitted"]) | set(answer["not_permitted"]) == asked

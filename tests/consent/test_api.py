"""The consent API: scopes, answers (default, decisions, per-study exceptions, policy versions),
the cohort subset, FHIR R4 Consent shape, and the access-log entry written for every answer."""

from __future__ import annotations

import pytest

from audit.models import AccessEvent
from audit.services import chain_verify
from consent.models import ConsentDecision
from consent.services import _write_decision, consent_policy_publish
from core.openapi import document
from tests.consent.conftest import make_study

pytestmark = pytest.mark.django_db


def decide(patient_record, policy, scope, decision, study=None, channel="portal") -> ConsentDecision:
    return _write_decision(patient=patient_record, scope=scope, decision=decision, study=study, policy=policy, actor=None,
                           channel=channel, kind="change", recorded_by="patient")


def check(client, token, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/api/v1/consent/check", params, **headers)


def cohort(client, token, body):
    return client.post("/api/v1/consent/cohort", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_check_needs_a_token_with_consent_read(client, patient, audit_token):
    record = patient.patient
    params = {"issuer": record.issuer, "mrn": record.mrn, "scope": "research"}
    assert check(client, None, **params).status_code == 401
    response = check(client, audit_token, **params)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    assert client.post("/api/v1/consent/check", HTTP_AUTHORIZATION=f"Bearer {audit_token}").status_code == 405
    assert not AccessEvent.objects.exists()


def test_check_answers_the_default_then_the_decision_and_logs_each_answer(client, patient, policy, ai_token):
    record = patient.patient
    params = {"issuer": record.issuer, "mrn": record.mrn, "scope": "ai_training"}
    first = check(client, ai_token, **params).json()
    assert first["allowed"] is False and first["basis"] == "institution_default" and first["decision"] is None
    decision = decide(record, policy, "ai_training", "granted")
    second = check(client, ai_token, **params).json()
    assert second["allowed"] is True and second["basis"] == "decision"
    assert second["decision"]["id"] == decision.pk and second["decision"]["policy_version"] == 1
    assert second["decision"]["receipt_id"] == str(decision.receipt_id)
    assert second["decision"]["decided_at"].endswith("Z")
    events = list(AccessEvent.objects.filter(action="consent_check").order_by("seq"))
    assert len(events) == 2
    for event, allowed in zip(events, (False, True), strict=True):
        assert event.patient == record and event.source == "api" and event.purpose == "ai_training"
        assert (event.actor_type, event.actor_name, event.organization) == ("ai_vendor", "acme-pipeline", "Acme AI Triage")
        assert event.details["allowed"] is allowed and event.details["consent_scope"] == "ai_training"
    assert chain_verify(record).ok


@pytest.mark.parametrize(("scope", "purpose"), [("research", "research"), ("commercial", "operations"), ("teaching", "operations")])
def test_scope_is_logged_as_the_purpose(client, patient, policy, ai_token, scope, purpose):
    record = patient.patient
    check(client, ai_token, issuer=record.issuer, mrn=record.mrn, scope=scope)
    event = AccessEvent.objects.get(action="consent_check")
    assert event.purpose == purpose and event.details["consent_scope"] == scope


def test_check_honours_per_study_exceptions(client, patient, policy, ai_token):
    record = patient.patient
    ct, mr = make_study(record), make_study(record)
    decide(record, policy, "research", "granted")
    decide(record, policy, "research", "refused", study=mr)
    base = {"issuer": record.issuer, "mrn": record.mrn, "scope": "research"}
    assert check(client, ai_token, study_uid=ct.study_uid, **base).json()["allowed"] is True
    answer = check(client, ai_token, study_uid=mr.study_uid, **base).json()
    assert answer["allowed"] is False and answer["basis"] == "study_decision"
    assert answer["decision"]["applies_to"] == mr.study_uid
    assert AccessEvent.objects.get(action="consent_check", study=mr).details["allowed"] is False


def test_old_decisions_stand_under_their_version_after_a_new_policy(client, patient, policy, ai_token):
    record = patient.patient
    decide(record, policy, "research", "granted")
    consent_policy_publish(version=2, text="Two.")
    answer = check(client, ai_token, issuer=record.issuer, mrn=record.mrn, scope="research").json()
    assert answer["allowed"] is True and answer["decision"]["policy_version"] == 1


def test_check_errors_are_clear_and_reveal_nothing(client, patient, other_patient, policy, ai_token):
    record = patient.patient
    other = make_study(other_patient.patient)
    assert check(client, ai_token, issuer=record.issuer, mrn=record.mrn, scope="marketing").json()["error"] == "invalid_scope"
    response = check(client, ai_token, issuer=record.issuer, mrn="nobody", scope="research")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    response = check(client, ai_token, issuer=record.issuer, mrn=record.mrn, scope="research", study_uid=other.study_uid)
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert check(client, ai_token, scope="research").status_code == 400
    assert not AccessEvent.objects.exists()


def test_cohort_returns_the_permitted_subset_and_logs_per_patient(client, patient, other_patient, policy, ai_token):
    a, b = patient.patient, other_patient.patient
    a1, a2, b1 = make_study(a), make_study(a), make_study(b)
    decide(a, policy, "ai_training", "granted")
    decide(a, policy, "ai_training", "refused", study=a2)
    decide(b, policy, "ai_training", "refused")
    response = cohort(client, ai_token, {"scope": "ai_training", "study_uids": [a1.study_uid, a2.study_uid, b1.study_uid, "9.9.9"]})
    assert response.status_code == 200
    body = response.json()
    assert body["permitted"] == [a1.study_uid]
    assert body["not_permitted"] == [a2.study_uid, b1.study_uid, "9.9.9"]
    ea = AccessEvent.objects.get(patient=a, action="consent_check")
    eb = AccessEvent.objects.get(patient=b, action="consent_check")
    assert ea.details["permitted"] == [a1.study_uid] and sorted(ea.details["asked"]) == sorted([a1.study_uid, a2.study_uid])
    assert eb.details["permitted"] == [] and eb.organization == "Acme AI Triage" and eb.purpose == "ai_training"
    assert ea.pk < eb.pk  # written in patient-id order (a was created first)


def test_cohort_validates_its_body(client, policy, ai_token, audit_token):
    assert cohort(client, ai_token, {"scope": "ai_training"}).json()["error"] == "invalid_study_uids"
    assert cohort(client, ai_token, {"scope": "x", "study_uids": []}).json()["error"] == "invalid_scope"
    assert cohort(client, ai_token, {"scope": "research", "study_uids": ["1"] * 1001}).status_code == 413
    assert cohort(client, audit_token, {"scope": "research", "study_uids": []}).status_code == 403
    assert cohort(client, ai_token, {"scope": "research", "study_uids": []}).json()["permitted"] == []


def test_fhir_consent_bundle_shape(client, patient, officer, policy, ai_token):
    record = patient.patient
    mr = make_study(record)
    first = decide(record, policy, "research", "granted")
    second = decide(record, policy, "research", "refused")
    exception = decide(record, policy, "ai_training", "granted", study=mr, channel="paper")
    response = client.get("/api/v1/fhir/Consent", {"patient": f"{record.issuer}|{record.mrn}"}, HTTP_AUTHORIZATION=f"Bearer {ai_token}")
    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 3
    resources = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    for resource in resources.values():
        assert resource["resourceType"] == "Consent"
        # R4 required elements: status, scope, category, and a patient reference.
        assert resource["status"] in {"active", "inactive"}
        assert resource["scope"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/consentscope"
        assert resource["category"][0]["coding"][0] == {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
        assert resource["patient"]["identifier"]["value"] == record.mrn
        assert resource["policy"][0]["uri"]
        assert resource["provision"]["type"] in {"permit", "deny"}
    old, new, exc = (resources[str(d.receipt_id)] for d in (first, second, exception))
    assert (old["status"], old["provision"]["type"]) == ("inactive", "permit")
    assert (new["status"], new["provision"]["type"]) == ("active", "deny")
    assert old["scope"]["coding"][0]["code"] == "research"
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH", "display": "healthcare research"} in old["provision"]["purpose"]
    assert exc["scope"]["coding"][0]["code"] == "patient-privacy"
    assert exc["provision"]["data"][0]["reference"]["identifier"]["value"] == f"urn:oid:{mr.study_uid}"
    assert "privacy office" in exc["performer"][0]["display"]
    event = AccessEvent.objects.get(action="consent_check")
    assert event.details["api"] == "fhir" and event.organization == "Acme AI Triage"


def test_fhir_consent_errors(client, patient, ai_token):
    assert client.get("/api/v1/fhir/Consent", {"patient": "nobody"}, HTTP_AUTHORIZATION=f"Bearer {ai_token}").status_code == 400
    response = client.get("/api/v1/fhir/Consent", {"patient": "X|nobody"}, HTTP_AUTHORIZATION=f"Bearer {ai_token}")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_operations_are_in_the_openapi_document():
    paths = document()["paths"]
    assert "get" in paths["/api/v1/consent/check"]
    assert "post" in paths["/api/v1/consent/cohort"]
    assert "get" in paths["/api/v1/fhir/Consent"]


def test_cohort_uses_the_institution_default_where_nobody_decided(client, patient, other_patient, policy, ai_token, settings):
    a, b = patient.patient, other_patient.patient
    a1, b1 = make_study(a), make_study(b)
    decide(b, policy, "research", "refused")
    settings.CONSENT_DEFAULT = "granted"
    body = cohort(client, ai_token, {"scope": "research", "study_uids": [a1.study_uid, b1.study_uid]}).json()
    assert body["permitted"] == [a1.study_uid] and body["not_permitted"] == [b1.study_uid]


# --- The answers are written as the token's Actor, the rows as before -----------------------------


def _service_fields(account) -> dict[str, str]:
    """What every consent answer wrote for the account before services took an Actor."""
    return {"actor_type": account.actor_type, "actor_name": account.name, "actor_ref": f"service:{account.pk}",
            "organization": account.organization, "role": "", "source": "api"}


def _row(event) -> dict[str, str]:
    return {name: getattr(event, name) for name in ("actor_type", "actor_name", "actor_ref", "organization", "role", "source")}


def test_a_service_actors_consent_check_row_is_unchanged(client, patient, policy, ai_token):
    from core.models import ServiceAccount

    record = patient.patient
    account = ServiceAccount.objects.get(name="acme-pipeline")
    decision = decide(record, policy, "research", "granted")
    check(client, ai_token, issuer=record.issuer, mrn=record.mrn, scope="research")
    event = AccessEvent.objects.get(action="consent_check")
    assert _row(event) == _service_fields(account) == {
        "actor_type": "ai_vendor", "actor_name": "acme-pipeline", "actor_ref": f"service:{account.pk}",
        "organization": "Acme AI Triage", "role": "", "source": "api",
    }
    assert (event.patient, event.study, event.action, event.purpose, event.outcome) == (
        record, None, "consent_check", "research", "success"
    )
    assert event.details == {"consent_scope": "research", "allowed": True, "basis": "decision",
                             "decision_id": decision.pk, "api": "check"}


def test_every_consent_answer_is_written_as_the_service_account(patient, policy, ai_token):
    """Called directly with the token's Actor (as ``core.api`` builds it): the same rows."""
    from consent.services import consent_check_answer, consent_cohort_answer, consent_fhir_read
    from core.actor import Actor
    from core.models import ServiceAccount

    record = patient.patient
    study = make_study(record)
    account = ServiceAccount.objects.get(name="acme-pipeline")
    actor = Actor.for_service(account, ip="192.0.2.7", user_agent="pipeline/1")
    consent_check_answer(actor=actor, patient=record, scope="ai_training", study=study)
    consent_cohort_answer(actor=actor, scope="teaching", study_uids=[study.study_uid])
    consent_fhir_read(actor=actor, patient=record)
    check_event, cohort_event, fhir_event = AccessEvent.objects.filter(action="consent_check").order_by("seq")
    for event in (check_event, cohort_event, fhir_event):
        assert _row(event) == _service_fields(account)
        assert event.patient == record and event.ip == "192.0.2.7" and event.user_agent == "pipeline/1"
    assert (check_event.study, check_event.purpose, check_event.details) == (
        study, "ai_training",
        {"consent_scope": "ai_training", "allowed": False, "basis": "institution_default", "decision_id": None, "api": "check"},
    )
    assert (cohort_event.purpose, cohort_event.details) == (
        "operations", {"consent_scope": "teaching", "api": "cohort", "asked": [study.study_uid], "permitted": []},
    )
    assert (fhir_event.purpose, fhir_event.details) == ("operations", {"api": "fhir", "decisions": 0})
    assert chain_verify(record).ok

"""POST /api/v1/audit/events: auth and scope, JSON batches, idempotency, validation, FHIR."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from accounts.services import service_account_create, service_account_revoke
from audit.ingest import UNKNOWN
from audit.models import AccessEvent
from audit.services import chain_verify
from imaging.models import Study
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/events"


@pytest.fixture
def token(db) -> str:
    _account, token = service_account_create(name="mercy-ehr", organization="Mercy Hospital", scopes=["audit:write"], actor_type="clinician")
    return token


@pytest.fixture
def record(db):
    patient = PatientFactory(issuer="STEXAMPLE", mrn="MRN-API-1")
    Study.objects.create(patient=patient, study_uid="1.2.3.4.5", accession="ACC-9", description="CT chest")
    return patient


def post(client: Client, body, token: str | None, content_type: str = "application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type, **headers)


def event(**overrides) -> dict:
    base = {
        "source_event_id": "ev-1",
        "occurred_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
        "patient": {"issuer": "STEXAMPLE", "mrn": "MRN-API-1"},
        "study_uid": "1.2.3.4.5",
        "actor": {"type": "clinician", "name": "Dr Jane Roe", "organization": "Mercy Hospital", "role": "Radiologist"},
        "purpose": "treatment",
        "action": "view",
        "outcome": "success",
    }
    base.update(overrides)
    return base


def test_requires_a_token(client, record):
    response = post(client, {"events": [event()]}, None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert post(client, {"events": [event()]}, "not-a-token").status_code == 401
    assert not AccessEvent.objects.exists()


def test_requires_the_audit_write_scope(client, record):
    _account, consent_token = service_account_create(name="broker", organization="Broker", scopes=["consent:read"])
    response = post(client, {"events": [event()]}, consent_token)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_revoked_token_is_refused(client, record, token):
    from core.models import ServiceAccount

    service_account_revoke(account=ServiceAccount.objects.get(name="mercy-ehr"))
    assert post(client, {"events": [event()]}, token).status_code == 401


def test_only_post(client, token):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_accepts_a_batch_and_chains_it(client, record, token):
    response = post(client, {"events": [event(), event(source_event_id="ev-2", action="download", study_uid="", accession="ACC-9")]}, token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 2 and body["rejected"] == 0
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]
    stored = AccessEvent.objects.get(pk=body["results"][0]["id"])
    assert stored.patient == record and stored.study.study_uid == "1.2.3.4.5"
    assert (stored.actor_name, stored.organization, stored.role, stored.source) == ("Dr Jane Roe", "Mercy Hospital", "Radiologist", "api")
    assert stored.details == {"reported_by": "mercy-ehr"}
    assert AccessEvent.objects.get(pk=body["results"][1]["id"]).study.accession == "ACC-9"
    assert chain_verify(record).ok


def test_resending_is_idempotent(client, record, token):
    post(client, {"events": [event()]}, token)
    body = post(client, {"events": [event(), event(source_event_id="ev-3")]}, token).json()
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted"]
    assert AccessEvent.objects.filter(patient=record).count() == 2


def test_ids_are_per_sender(client, record, token):
    _other, other_token = service_account_create(name="ai-vendor", organization="Northlight AI", scopes=["audit:write"], actor_type="ai_vendor")
    post(client, {"events": [event()]}, token)
    body = post(client, {"events": [event(actor={"name": "Model"}, purpose="ai_inference")]}, other_token).json()
    assert body["results"][0]["status"] == "accepted"
    ai = AccessEvent.objects.get(pk=body["results"][0]["id"])
    # Defaults come from the service account when the event does not say.
    assert (ai.actor_type, ai.organization) == ("ai_vendor", "Northlight AI")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"patient": {"issuer": "STEXAMPLE", "mrn": "NOBODY"}}, UNKNOWN),
        ({"patient": None}, "patient must be an object"),
        ({"study_uid": "9.9.9"}, UNKNOWN),
        ({"purpose": "curiosity"}, "purpose must be one of"),
        ({"action": "stare"}, "action must be one of"),
        ({"occurred_at": "2026-03-03T10:14:00"}, "time zone"),
        ({"occurred_at": "yesterday"}, "not an ISO 8601"),
        ({"occurred_at": (timezone.now() + dt.timedelta(days=2)).isoformat()}, "future"),
        ({"source_event_id": ""}, "source_event_id is required"),
        ({"actor": {"type": "alien"}}, "actor.type must be one of"),
        # Only Lightbox records a proxy (proxies/, docs/security.md §28).
        ({"actor": {"type": "proxy"}}, "actor.type must be one of"),
        ({"actor": {"name": "x" * 500}}, "longer than"),
    ],
)
def test_rejects_with_a_reason(client, record, token, overrides, reason):
    body = post(client, {"events": [event(**overrides), event(source_event_id="ok")]}, token).json()
    first, second = body["results"]
    assert first["status"] == "rejected" and reason in first["reason"]
    # One bad event does not sink the batch.
    assert second["status"] == "accepted"
    assert body["rejected"] == 1 and body["accepted"] == 1


def test_another_patients_study_is_rejected(client, record, token):
    other = PatientFactory(issuer="STEXAMPLE", mrn="MRN-API-2")
    Study.objects.create(patient=other, study_uid="7.7.7")
    result = post(client, {"events": [event(study_uid="7.7.7")]}, token).json()["results"][0]
    assert result["status"] == "rejected" and result["reason"] == UNKNOWN
    assert not AccessEvent.objects.filter(patient=other).exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        ({"nope": 1}, "application/json", 400, "invalid_body"),
        ({"events": []}, "application/json", 400, "empty_batch"),
        ("x=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies(client, token, body, content_type, status, code):
    response = post(client, body, token, content_type=content_type)
    assert response.status_code == status
    assert response.json()["error"] == code


def test_batch_limit(client, record, token):
    response = post(client, {"events": [event(source_event_id=str(i)) for i in range(501)]}, token)
    assert response.status_code == 413
    assert not AccessEvent.objects.exists()


# --- FHIR R4 AuditEvent (IHE BALP) -----------------------------------------------------------


def audit_event(resource_id: str = "ae-1", **overrides) -> dict:
    resource = {
        "resourceType": "AuditEvent",
        "id": resource_id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": "2026-03-03T10:14:00+00:00",
        "outcome": "0",
        "purposeOfEvent": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}],
        "agent": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser"}]},
                "role": [{"coding": [{"code": "RAD", "display": "Radiologist"}]}],
                "who": {"identifier": {"value": "prac-77"}, "display": "Dr Jane Roe"},
                "requestor": True,
            },
            {"who": {"reference": "Organization/mercy", "display": "Mercy Hospital"}, "requestor": False},
        ],
        "source": {"observer": {"display": "Mercy EHR"}},
        "entity": [
            {"what": {"reference": "Patient/123", "identifier": {"system": "STEXAMPLE", "value": "MRN-API-1"}},
             "type": {"code": "1"}, "role": {"code": "1"}},
            {"what": {"identifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4.5"}}},
        ],
    }
    resource.update(overrides)
    return resource


def test_fhir_audit_event_is_mapped(client, record, token):
    response = post(client, audit_event(), token, content_type="application/fhir+json")
    assert response.status_code == 200, response.content
    result = response.json()["results"][0]
    assert result["status"] == "accepted", result
    stored = AccessEvent.objects.get(pk=result["id"])
    assert stored.occurred_at == dt.datetime(2026, 3, 3, 10, 14, tzinfo=dt.UTC)
    assert (stored.action, stored.purpose, stored.outcome) == ("view", "treatment", "success")
    assert (stored.actor_name, stored.actor_ref, stored.role, stored.organization) == ("Dr Jane Roe", "prac-77", "Radiologist", "Mercy Hospital")
    assert stored.actor_type == "clinician"  # the service account's type: FHIR's agent types are not ours
    assert stored.study.study_uid == "1.2.3.4.5"
    assert stored.source_event_id == "mercy-ehr/ae-1"


def test_fhir_bundle_with_purposes_subtypes_and_failures(client, record, token):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": audit_event("a", purposeOfEvent=[{"coding": [{"code": "HRESCH"}]}],
                                     subtype=[{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106"}])},
            {"resource": audit_event("b", purposeOfEvent=[{"coding": [{"code": "ETREAT"}]}], outcome="8",
                                     outcomeDesc="Access denied by consent", subtype=[], action="E")},
            {"resource": audit_event("c", entity=[])},
            {"resource": audit_event("d", purposeOfEvent=[{"coding": [{"code": "WHATEVER"}]}])},
            {"resource": {"resourceType": "Patient", "id": "p"}},
        ],
    }
    body = post(client, bundle, token, content_type="application/fhir+json").json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted", "accepted", "rejected", "rejected", "rejected"]
    research = AccessEvent.objects.get(pk=body["results"][0]["id"])
    assert (research.purpose, research.action) == ("research", "export")
    emergency = AccessEvent.objects.get(pk=body["results"][1]["id"])
    assert (emergency.purpose, emergency.action, emergency.outcome) == ("emergency", "query", "denied")
    assert "patient" in body["results"][2]["reason"]
    assert "purposeOfEvent" in body["results"][3]["reason"]
    # Re-sending the bundle duplicates nothing.
    again = post(client, bundle, token, content_type="application/fhir+json").json()
    assert [r["status"] for r in again["results"]][:2] == ["duplicate", "duplicate"]


def test_openapi_describes_the_endpoint(client):
    document = client.get("/api/v1/openapi.json").json()
    operation = document["paths"][URL]["post"]
    assert operation["operationId"] == "auditEventsCreate"
    assert "AuditEventBatch" in document["components"]["schemas"]

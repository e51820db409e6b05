"""Consent decisions as FHIR R4 ``Consent`` resources (http://hl7.org/fhir/R4/consent.html).

Each decision becomes one Consent: ``status`` active for the decision now in force for its
(scope, study), inactive for one superseded later; ``scope`` research or patient-privacy (the
R4 consentscope codes); ``provision.type`` permit or deny, with the purpose coded in our own
code system (and HL7's HRESCH for research) and, for a per-study exception, the study as
``provision.data``; ``policy`` names the policy version; ``sourceAttachment`` points at the
signed receipt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from consent.models import ConsentDecision, Scope

CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
LOINC = "http://loinc.org"
DICOM_UID_SYSTEM = "urn:dicom:uid"


def _site() -> str:
    return settings.SITE_URL.rstrip("/")


def scope_system() -> str:
    return f"{_site()}/fhir/CodeSystem/consent-scope"


def patient_system(issuer: str) -> str:
    return f"{_site()}/fhir/NamingSystem/mrn/{issuer}"


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def consent_resource(decision: ConsentDecision, *, active: bool) -> dict[str, Any]:
    purposes = [{"system": scope_system(), "code": decision.scope, "display": Scope(decision.scope).label}]
    if decision.scope == Scope.RESEARCH:
        purposes.append({"system": ACT_REASON_SYSTEM, "code": "HRESCH", "display": "healthcare research"})
    provision: dict[str, Any] = {
        "type": "permit" if decision.allowed else "deny",
        "purpose": [str_labels(p) for p in purposes],
    }
    if decision.study_id:
        provision["data"] = [
            {"meaning": "related", "reference": {"identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{decision.study.study_uid}"}, "type": "ImagingStudy"}}
        ]
    performer = (
        {"display": "Patient"} if decision.channel == ConsentDecision.Channel.PORTAL
        else {"display": f"{settings.HOSPITAL_NAME} privacy office ({decision.get_channel_display()})"}
    )
    return {
        "resourceType": "Consent",
        "id": str(decision.receipt_id),
        "meta": {"lastUpdated": _utc(decision.decided_at)},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{decision.receipt_id}"}],
        "status": "active" if active else "inactive",
        "scope": {
            "coding": [
                {"system": CONSENT_SCOPE_SYSTEM, "code": "research", "display": "Research"}
                if decision.scope == Scope.RESEARCH
                else {"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy", "display": "Privacy Consent"}
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": patient_system(decision.patient.issuer), "value": decision.patient.mrn}},
        "dateTime": _utc(decision.decided_at),
        "performer": [performer],
        "organization": [{"display": settings.HOSPITAL_NAME}],
        "sourceAttachment": {
            "contentType": "application/json",
            "title": f"Signed consent receipt {decision.receipt_id}",
        },
        "policy": [{"authority": _site(), "uri": f"{_site()}/consent/policy/#v{decision.policy.version}"}],
        "provision": provision,
    }


def str_labels(coding: dict[str, Any]) -> dict[str, Any]:
    # gettext_lazy labels are not JSON; a FHIR display is a plain string.
    return {k: str(v) for k, v in coding.items()}


def bundle(decisions: Iterable[ConsentDecision]) -> dict[str, Any]:
    """A searchset Bundle of ``decisions`` (oldest first), each marked active or inactive."""
    decisions = list(decisions)
    latest: dict[tuple[int, str, int | None], int] = {}
    for d in sorted(decisions, key=lambda d: (d.decided_at, d.pk)):
        latest[(d.patient_id, d.scope, d.study_id)] = d.pk
    entries = []
    for d in decisions:
        resource = consent_resource(d, active=latest[(d.patient_id, d.scope, d.study_id)] == d.pk)
        entries.append({"fullUrl": f"urn:uuid:{d.receipt_id}", "resource": resource, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}

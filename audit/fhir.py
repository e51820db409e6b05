"""FHIR R4 AuditEvent (single or Bundle) → the access log's batch format, after IHE BALP.

BALP (Basic Audit Log Patterns) puts the patient in an ``entity`` whose ``what`` is the
Patient (identified here by ``identifier.system`` = our issuer and ``value`` = the MRN), the
user in the ``agent`` marked ``requestor``, the purpose in ``purposeOfEvent`` (HL7 v3
ActReason), and the operation in ``action`` (C/R/U/D/E) refined by ``subtype``. A DICOM study is
an entity whose identifier has system ``urn:dicom:uid`` (value ``urn:oid:<Study UID>``), or an
accession number (identifier type ``ACSN``).
"""

from __future__ import annotations

from typing import Any

from audit.ingest import Rejected, normalise
from audit.models import AccessEvent

P = AccessEvent.Purpose
A = AccessEvent.Action

# HL7 v3 ActReason (PurposeOfUse) → our purposes; our own codes are accepted as well.
PURPOSES = {
    "TREAT": P.TREATMENT, "ETREAT": P.EMERGENCY, "BTG": P.EMERGENCY, "HPAYMT": P.PAYMENT,
    "HOPERAT": P.OPERATIONS, "HRESCH": P.RESEARCH, "CLINTRCH": P.RESEARCH, "PATRQT": P.PATIENT_REQUEST,
    "HLEGAL": P.LEGAL, "HCOMPL": P.PRIVACY_INVESTIGATION, "HPRGRP": P.OPERATIONS,
}
# DICOM (DCM) and FHIR restful-interaction subtypes → actions.
SUBTYPES = {
    "110106": A.EXPORT, "110107": A.INGEST, "110112": A.QUERY, "110103": A.VIEW, "110110": A.VIEW,
    "read": A.VIEW, "vread": A.VIEW, "search": A.QUERY, "search-type": A.QUERY, "search-system": A.QUERY,
    "create": A.INGEST, "update": A.MODIFY, "patch": A.MODIFY, "delete": A.DELETE,
}
ACTIONS = {"C": A.INGEST, "R": A.VIEW, "U": A.MODIFY, "D": A.DELETE, "E": A.QUERY}


def _dict(value: Any) -> dict:
    """``value`` if it is a JSON object, else an empty one: a sender's wrong type is a missing
    value (the event is then rejected with a reason), never a crash."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _code(coding: dict) -> str | None:
    code = coding.get("code")
    return code if isinstance(code, str) else None


def _codings(concept: Any) -> list[dict]:
    if isinstance(concept, dict):
        if "coding" in concept:
            return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]
        return [concept]  # a bare Coding (AuditEvent.type, .subtype)
    if isinstance(concept, list):
        return [c for item in concept for c in _codings(item)]
    return []


def _purpose(resource: dict) -> str | None:
    for coding in _codings(resource.get("purposeOfEvent")):
        code = _code(coding)
        if code in PURPOSES:
            return PURPOSES[code]
        if code in P.values:
            return code
    return None


def _action(resource: dict) -> str | None:
    for coding in _codings(resource.get("subtype")):
        code = _code(coding)
        if code in SUBTYPES:
            return SUBTYPES[code]
        if code in A.values:
            return code
    action = resource.get("action")
    return ACTIONS.get(action) if isinstance(action, str) else None


def _outcome(resource: dict) -> str:
    code = str(resource.get("outcome") or "0")
    if code == "0":
        return AccessEvent.Outcome.SUCCESS
    description = str(resource.get("outcomeDesc") or "").lower()
    if any(word in description for word in ("denied", "forbidden", "refused", "consent")):
        return AccessEvent.Outcome.DENIED
    return AccessEvent.Outcome.FAILURE


def _identifier(reference: Any) -> dict:
    if isinstance(reference, dict) and isinstance(reference.get("identifier"), dict):
        return reference["identifier"]
    return {}


def _entities(resource: dict) -> tuple[dict | None, str, str]:
    patient, study_uid, accession = None, "", ""
    for entity in _list(resource.get("entity")):
        if not isinstance(entity, dict):
            continue
        what = _dict(entity.get("what"))
        ident = _identifier(what)
        reference = str(what.get("reference") or "")
        codes = {_code(c) for c in _codings(ident.get("type"))}
        if ident.get("system") == "urn:dicom:uid":
            study_uid = str(ident.get("value") or "").removeprefix("urn:oid:")
        elif "ACSN" in codes:
            accession = str(ident.get("value") or "")
        elif reference.startswith("Patient/") or what.get("type") == "Patient" or (
            _dict(entity.get("type")).get("code") == "1" and _dict(entity.get("role")).get("code") == "1"
        ):
            if ident:
                patient = {"issuer": ident.get("system"), "mrn": ident.get("value")}
    return patient, study_uid, accession


def _actor(resource: dict, default_actor_type: str) -> dict:
    agents = [a for a in _list(resource.get("agent")) if isinstance(a, dict)]
    requestor = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    who = _dict(requestor.get("who"))
    actor: dict[str, Any] = {
        "name": who.get("display") or requestor.get("name") or "",
        "ref": str(_identifier(who).get("value") or who.get("reference") or ""),
        "type": default_actor_type,
    }
    for coding in _codings(requestor.get("type")) + _codings(requestor.get("role")):
        if coding.get("code") in AccessEvent.ActorType.values:
            actor["type"] = coding["code"]
        elif coding.get("display") and not actor.get("role"):
            actor["role"] = coding["display"]
    for agent in agents:
        agent_who = _dict(agent.get("who"))
        if str(agent_who.get("reference") or "").startswith("Organization/") or agent_who.get("type") == "Organization":
            actor["organization"] = agent_who.get("display") or ""
            break
    else:
        observer = _dict(_dict(resource.get("source")).get("observer"))
        if str(observer.get("reference") or "").startswith("Organization/"):
            actor["organization"] = observer.get("display") or ""
    return actor


def to_batch_event(resource: dict, *, default_actor_type: str) -> dict:
    """One AuditEvent as an event of the JSON batch format (still to be validated)."""
    period = _dict(resource.get("period"))
    patient, study_uid, accession = _entities(resource)
    return {
        "source_event_id": resource.get("id"),
        "occurred_at": period.get("start") or resource.get("recorded"),
        "patient": patient,
        "study_uid": study_uid,
        "accession": accession,
        "actor": _actor(resource, default_actor_type),
        "purpose": _purpose(resource),
        "action": _action(resource),
        "outcome": _outcome(resource),
    }


def is_fhir(body: Any) -> bool:
    return isinstance(body, dict) and body.get("resourceType") in ("AuditEvent", "Bundle")


def from_fhir(body: dict, *, default_actor_type: str, default_organization: str) -> tuple[list[Any], list[dict | Rejected]]:
    """Raw events (for their ids) and, per event, the normalised fields or the rejection."""
    if body.get("resourceType") == "Bundle":
        resources = [e.get("resource") for e in _list(body.get("entry")) if isinstance(e, dict)]
    else:
        resources = [body]
    raws: list[Any] = []
    results: list[dict | Rejected] = []
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("resourceType") != "AuditEvent":
            raws.append({})
            results.append(Rejected("a Bundle entry that is not an AuditEvent"))
            continue
        event = to_batch_event(resource, default_actor_type=default_actor_type)
        raws.append(event)
        try:
            if event["patient"] is None:
                raise Rejected("no entity identifies the patient (entity.what.identifier with the issuer as system)")
            if event["purpose"] is None:
                raise Rejected("purposeOfEvent has no code we know (HL7 v3 ActReason, e.g. TREAT, HRESCH)")
            if event["action"] is None:
                raise Rejected("action/subtype has no code we know (C, R, U, D, E or a DICOM/FHIR subtype)")
            results.append(normalise(event, default_actor_type=default_actor_type, default_organization=default_organization))
        except Rejected as exc:
            results.append(exc)
    return raws, results

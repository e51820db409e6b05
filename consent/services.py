"""Writes for consent: decisions (with signed receipts), policy versions, and the answers given
to downstream systems.

Every decision is a new ``ConsentDecision`` row (the table is append-only), a signed receipt
stored with it, and one access event (action ``modify``, purpose ``patient_request``) in the
same transaction. The patient's ``Patient`` row is locked first, so two simultaneous changes
for one patient are written one after the other, each with its own later time: both are in the
history, in order, and the current state is the last one.

Every answer given to a downstream system (check, cohort, FHIR read) writes one access event
per patient concerned (action ``consent_check``, the caller's organisation, the scope as the
purpose), so the patient sees who asked and what they were told.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.models import AccessEvent
from audit.services import record_access, record_portal_access
from consent import fhir, receipts, selectors
from consent.models import ConsentDecision, ConsentPolicy, Scope
from consent.scopes import AUDIT_PURPOSE
from core.models import ServiceAccount
from core.reauth import require_recent_reauthentication
from imaging.models import Patient, Study

# A cohort request names at most this many studies: a dataset builder pages through larger
# sets, and one request stays one short transaction.
COHORT_MAX_STUDIES = 1000


class NoPolicy(Exception):
    """No consent policy has been published yet, so no decision can be recorded."""


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _write_decision(
    *,
    patient: Patient,
    scope: str,
    decision: str,
    study: Study | None,
    policy: ConsentPolicy,
    actor,
    channel: str,
    kind: str,
    note: str = "",
    recorded_by: str,
    decided_at: dt.datetime | None = None,
) -> ConsentDecision:
    """Insert one decision with its signed receipt. The caller holds the patient's row lock.
    ``decided_at`` is for loading past decisions (the demo); live decisions take the time now."""
    if study is not None and study.patient_id != patient.pk:
        raise ValidationError({"study": "The study belongs to another patient."})
    # Taken under the patient's lock, so decision times never go backwards for a patient.
    decided_at = decided_at or timezone.now()
    receipt_id = uuid.uuid4()
    row = ConsentDecision(
        patient=patient, scope=scope, study=study, decision=decision, kind=kind, policy=policy,
        decided_at=decided_at, actor=actor, channel=channel, note=note, receipt_id=receipt_id,
    )
    row.full_clean(exclude=["receipt"])
    # The row is never updated (append-only), so the receipt is made before the insert.
    row.receipt = receipts.sign(
        receipts.build(
            receipt_id=str(receipt_id), decided_at=decided_at, patient_id=patient.pk, scope=scope, decision=decision,
            study_uid=study.study_uid if study else None, policy_version=policy.version, policy_sha256=policy.sha256,
            channel=channel, recorded_by=recorded_by, kind=kind,
        )
    )
    row.save(force_insert=True)
    return row


def _locked_patient(patient: Patient) -> Patient:
    return Patient.objects.select_for_update().get(pk=patient.pk)


def _policy_or_fail() -> ConsentPolicy:
    policy = selectors.current_policy()
    if policy is None:
        raise NoPolicy("No consent policy has been published yet.")
    return policy


def _audit_details(row: ConsentDecision, **extra: Any) -> dict[str, Any]:
    return {
        "consent_scope": row.scope,
        "decision": row.decision,
        "applies_to": row.study.study_uid if row.study_id else "all_studies",
        "policy_version": row.policy.version,
        "channel": row.channel,
        "receipt_id": str(row.receipt_id),
        "kind": row.kind,
        **extra,
    }


@transaction.atomic
def consent_decision_record(*, request: HttpRequest, scope: str, decision: str, study: Study | None = None) -> ConsentDecision:
    """The signed-in patient says yes or no to ``scope`` (for all studies, or ``study`` only).

    Callers: the consent change view, after the patient saw the confirmation. Needs a recent
    reauthentication (checked again here). Recorded under the current policy version, with a
    signed receipt and one access event (modify, patient_request).
    """
    require_recent_reauthentication(request)
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        raise PermissionDenied("Only a patient can change their own consent.")
    if scope not in Scope.values or decision not in ConsentDecision.Decision.values:
        raise ValidationError("Unknown scope or decision.")
    patient = _locked_patient(patient)
    row = _write_decision(
        patient=patient, scope=scope, decision=decision, study=study, policy=_policy_or_fail(),
        actor=request.user, channel=ConsentDecision.Channel.PORTAL, kind=ConsentDecision.Kind.CHANGE, recorded_by="patient",
    )
    record_portal_access(request, patient=patient, study=study, action=AccessEvent.Action.MODIFY,
                         purpose=AccessEvent.Purpose.PATIENT_REQUEST, details=_audit_details(row))
    return row


@transaction.atomic
def consent_decision_record_for_patient(
    *, request: HttpRequest, patient: Patient, scope: str, decision: str, channel: str, study: Study | None = None, note: str = ""
) -> ConsentDecision:
    """A privacy officer records a decision the patient gave on a paper form or by phone.

    Callers: the privacy office's record form. Officers only; needs a recent reauthentication.
    The channel (paper/phone) and the officer are on the decision and its receipt; the patient
    sees the access event (modify, patient_request) under the officer's name.
    """
    require_recent_reauthentication(request)
    if not getattr(request.user, "is_privacy_officer", False):
        raise PermissionDenied("Only a privacy officer can record a paper or phone decision.")
    if channel not in (ConsentDecision.Channel.PAPER, ConsentDecision.Channel.PHONE):
        raise ValidationError({"channel": "An officer records paper or phone decisions only."})
    if scope not in Scope.values or decision not in ConsentDecision.Decision.values:
        raise ValidationError("Unknown scope or decision.")
    patient = _locked_patient(patient)
    row = _write_decision(
        patient=patient, scope=scope, decision=decision, study=study, policy=_policy_or_fail(), actor=request.user,
        channel=channel, kind=ConsentDecision.Kind.CHANGE, note=note, recorded_by="privacy_office",
    )
    record_portal_access(request, patient=patient, study=study, action=AccessEvent.Action.MODIFY,
                         purpose=AccessEvent.Purpose.PATIENT_REQUEST, details=_audit_details(row))
    return row


@transaction.atomic
def consent_policy_confirm(*, request: HttpRequest) -> list[ConsentDecision]:
    """The patient confirms their standing choices under the current policy version.

    Callers: the policy page. Needs a recent reauthentication. Each decision made under an
    older version is recorded again, unchanged, under the new one (kind ``reconfirmation``, with
    its own receipt); until then the old decisions stand under their old version. One access
    event for the whole confirmation.
    """
    require_recent_reauthentication(request)
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        raise PermissionDenied("Only a patient can confirm their own consent.")
    patient = _locked_patient(patient)
    policy, stale = selectors.pending_policy(patient)
    if policy is None or not stale:
        return []
    rows = [
        _write_decision(
            patient=patient, scope=old.scope, decision=old.decision, study=old.study, policy=policy, actor=request.user,
            channel=ConsentDecision.Channel.PORTAL, kind=ConsentDecision.Kind.RECONFIRMATION, recorded_by="patient",
        )
        for old in stale
    ]
    record_portal_access(
        request, patient=patient, action=AccessEvent.Action.MODIFY, purpose=AccessEvent.Purpose.PATIENT_REQUEST,
        details={"policy_confirmed": policy.version, "decisions": len(rows), "receipt_ids": [str(r.receipt_id) for r in rows]},
    )
    return rows


@transaction.atomic
def consent_policy_publish(*, version: int, text: str, changes: str = "", title: str = "", effective_from: dt.datetime | None = None) -> ConsentPolicy:
    """Publish a new policy version. Callers: administrators (Django admin) and the demo.

    Existing decisions keep their version until each patient confirms (``consent_policy_confirm``).
    """
    latest = ConsentPolicy.objects.order_by("-version").first()
    if latest is not None and version <= latest.version:
        raise ValidationError({"version": f"A new version must be above {latest.version}."})
    policy = ConsentPolicy(version=version, text=text, changes=changes, effective_from=effective_from or timezone.now())
    if title:
        policy.title = title
    policy.full_clean()
    policy.save()
    return policy


# --- Answers for downstream systems --------------------------------------------------------


def _actor(account: ServiceAccount) -> dict[str, str]:
    return {
        "actor_type": account.actor_type,
        "actor_name": account.name,
        "actor_ref": f"service:{account.pk}",
        "organization": account.organization,
        "source": AccessEvent.Source.API,
    }


def _answer_dict(scope: str, answer: selectors.Answer, study: Study | None) -> dict[str, Any]:
    decision = answer.decision
    return {
        "allowed": answer.allowed,
        "scope": scope,
        "study_uid": study.study_uid if study else None,
        "basis": answer.basis,
        "decision": None if decision is None else {
            "id": decision.pk,
            "decision": decision.decision,
            "applies_to": decision.study.study_uid if decision.study_id else "all_studies",
            "decided_at": _utc(decision.decided_at),
            "policy_version": decision.policy.version,
            "policy_sha256": decision.policy.sha256,
            "receipt_id": str(decision.receipt_id),
        },
    }


@transaction.atomic
def consent_check_answer(*, account: ServiceAccount, patient: Patient, scope: str, study: Study | None = None) -> dict[str, Any]:
    """Whether ``account`` may use ``patient``'s scans (or ``study``) for ``scope``, logged.

    Callers: the consent-check API, after resolving the patient and study. Writes one access
    event (consent_check) with the answer in its details.
    """
    answer = selectors.effective_consent(patient, scope, study)
    result = _answer_dict(scope, answer, study)
    result["checked_at"] = _utc(timezone.now())
    record_access(
        patient=patient, study=study, action=AccessEvent.Action.CONSENT_CHECK, purpose=AUDIT_PURPOSE[scope],
        details={"consent_scope": scope, "allowed": answer.allowed, "basis": answer.basis,
                 "decision_id": answer.decision.pk if answer.decision else None, "api": "check"},
        **_actor(account),
    )
    return result


@transaction.atomic
def consent_cohort_answer(*, account: ServiceAccount, scope: str, study_uids: list[str]) -> dict[str, Any]:
    """The subset of ``study_uids`` that may be used for ``scope``, logged per patient.

    Callers: the cohort API. Unknown study UIDs are not permitted (and not told apart from
    refused ones, so the answer does not reveal which studies exist). One access event per
    patient concerned, written in patient-id order (each locks that patient's chain head).
    """
    wanted = list(dict.fromkeys(study_uids))
    studies = Study.objects.filter(study_uid__in=wanted).select_related("patient")
    by_patient: dict[int, list[Study]] = defaultdict(list)
    for study in studies:
        by_patient[study.patient_id].append(study)
    # One query for every decision of these patients on this scope (not two per study): the
    # latest per (patient, study) wins, a study's own decision over the all-studies one.
    latest: dict[tuple[int, int | None], str] = {}
    rows = ConsentDecision.objects.filter(patient_id__in=list(by_patient), scope=scope).order_by("decided_at", "pk")
    for patient_id, study_id, decision in rows.values_list("patient_id", "study_id", "decision"):
        latest[(patient_id, study_id)] = decision
    default = selectors.default_decision()

    def allowed_for(study: Study) -> bool:
        decision = latest.get((study.patient_id, study.pk)) or latest.get((study.patient_id, None)) or default
        return decision == ConsentDecision.Decision.GRANTED

    permitted: set[str] = set()
    for patient_id in sorted(by_patient):
        group = sorted(by_patient[patient_id], key=lambda s: s.study_uid)
        patient = group[0].patient
        allowed = [s.study_uid for s in group if allowed_for(s)]
        permitted.update(allowed)
        record_access(
            patient=patient, action=AccessEvent.Action.CONSENT_CHECK, purpose=AUDIT_PURPOSE[scope],
            details={"consent_scope": scope, "api": "cohort", "asked": [s.study_uid for s in group], "permitted": allowed},
            **_actor(account),
        )
    return {
        "scope": scope,
        "permitted": [uid for uid in wanted if uid in permitted],
        "not_permitted": [uid for uid in wanted if uid not in permitted],
        "checked_at": _utc(timezone.now()),
    }


@transaction.atomic
def consent_fhir_read(*, account: ServiceAccount, patient: Patient) -> dict[str, Any]:
    """The patient's decisions as a FHIR R4 searchset Bundle of Consent resources, logged.

    Callers: the FHIR Consent API. One access event (consent_check, purpose operations: the
    caller asked about every scope at once, so no single scope is the purpose).
    """
    decisions = list(
        ConsentDecision.objects.filter(patient=patient).select_related("policy", "study", "patient").order_by("decided_at", "pk")
    )
    bundle = fhir.bundle(decisions)
    record_access(
        patient=patient, action=AccessEvent.Action.CONSENT_CHECK, purpose=AccessEvent.Purpose.OPERATIONS,
        details={"api": "fhir", "decisions": len(decisions)}, **_actor(account),
    )
    return bundle

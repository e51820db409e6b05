"""Writes for consent: decisions (with signed receipts), policy versions, and the answers given
to downstream systems.

Every service takes the ``actor`` (keyword-only), never a request. Every decision is a new
``ConsentDecision`` row (the table is append-only), a signed receipt stored with it, and one
access event (action ``modify``, purpose ``patient_request``) in the same transaction, recorded
through ``core.access_log``. The patient's ``Patient`` row is locked first, so two simultaneous
changes for one patient are written one after the other, each with its own later time: both are
in the history, in order, and the current state is the last one. A change needs a recent
reauthentication, checked by the view and again here (``Actor.require_recent_reauthentication``,
docs/security.md §6).

Every answer given to a downstream system (check, cohort, FHIR read) writes one access event
per patient concerned (action ``consent_check``, the caller's organisation, the scope as the
purpose, source ``api``), so the patient sees who asked and what they were told.

The audited reads of the patient's consent pages (history, receipts, partners) are in
``consent.reads``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from audit.models import AccessEvent
from consent import fhir, receipts, selectors
from consent.models import ConsentDecision, ConsentPolicy, Scope
from consent.scopes import AUDIT_PURPOSE
from core import access_log
from core.actor import Actor
from imaging.models import Patient, Study
from imaging.selectors import patient_get, study_get
from notices.models import Notice
from notices.services import notices_add

if TYPE_CHECKING:
    from accounts.models import User

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
    channel: str,
    kind: str,
    recorded_by: str,
    actor_id: int | None = None,
    actor: User | None = None,
    note: str = "",
    decided_at: dt.datetime | None = None,
    proxy: dict[str, str] | None = None,
) -> ConsentDecision:
    """Insert one decision with its signed receipt. The caller holds the patient's row lock.

    The decision's account (the model's ``actor``) is ``actor_id``, which the services take from
    ``Actor.user_id``; a ``User`` row may be given as ``actor`` instead (the demo, tests).
    ``decided_at`` is for loading past decisions (the demo); live decisions take the time now."""
    if study is not None and study.patient_id != patient.pk:
        raise ValidationError({"study": "The study belongs to another patient."})
    # Taken under the patient's lock, so decision times never go backwards for a patient.
    decided_at = decided_at or timezone.now()
    receipt_id = uuid.uuid4()
    row = ConsentDecision(
        patient=patient, scope=scope, study=study, decision=decision, kind=kind, policy=policy,
        decided_at=decided_at, actor_id=actor.pk if actor is not None else actor_id, channel=channel, note=note,
        receipt_id=receipt_id,
    )
    row.full_clean(exclude=["receipt"])
    # The row is never updated (append-only), so the receipt is made before the insert.
    row.receipt = receipts.sign(
        receipts.build(
            receipt_id=str(receipt_id), decided_at=decided_at, patient_id=patient.pk, scope=scope, decision=decision,
            study_uid=study.study_uid if study else None, policy_version=policy.version, policy_sha256=policy.sha256,
            channel=channel, recorded_by=recorded_by, kind=kind, proxy=proxy,
        )
    )
    row.save(force_insert=True)
    return row


def _locked_patient(actor: Actor, patient: Patient) -> Patient:
    """``patient``'s row, locked until the end of the transaction: one decision at a time."""
    return Patient.objects.for_actor(actor).select_for_update().get(pk=patient.pk)


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


def _check_choice(scope: str, decision: str) -> None:
    if scope not in Scope.values or decision not in ConsentDecision.Decision.values:
        raise ValidationError("Unknown scope or decision.")


@transaction.atomic
def consent_decision_record(*, actor: Actor, scope: str, decision: str, study_id: int | None = None) -> ConsentDecision:
    """The patient says yes or no to ``scope`` (for all studies, or study ``study_id`` only).

    Callers: the consent change view, after the patient saw the confirmation. Patients only
    (anyone else: ``PermissionDenied``); a study outside their record is ``Http404``. Needs a
    recent reauthentication (checked again here). Recorded under the current policy version,
    with a signed receipt and one access event (modify, patient_request).
    """
    actor.require_recent_reauthentication()
    patient = patient_get(actor=actor)
    # A proxy only when the grant's scope (and the patient's age) allows consent (docs/security.md §28).
    if patient is None or not actor.allows("consent"):
        raise PermissionDenied("Only a patient can change their own consent.")
    _check_choice(scope, decision)
    study = study_get(actor=actor, study_id=study_id) if study_id is not None else None
    patient = _locked_patient(actor, patient)
    row = _write_decision(
        patient=patient, scope=scope, decision=decision, study=study, policy=_policy_or_fail(), actor_id=actor.user_id,
        channel=ConsentDecision.Channel.PORTAL, kind=ConsentDecision.Kind.CHANGE,
        recorded_by="proxy" if actor.is_proxy else "patient",
        proxy={"name": actor.name, "relationship": actor.proxy_relationship} if actor.is_proxy else None,
    )
    access_log.record(actor=actor, patient=patient, study=study, action=AccessEvent.Action.MODIFY,
                      purpose=AccessEvent.Purpose.PATIENT_REQUEST, details=_audit_details(row))
    return row


@transaction.atomic
def consent_decision_record_for_patient(
    *, actor: Actor, patient: Patient, scope: str, decision: str, channel: str, study_id: int | None = None,
    note: str = "",
) -> ConsentDecision:
    """A privacy officer records a decision ``patient`` gave on a paper form or by phone.

    Callers: the privacy office's record form, which found the patient by issuer and MRN.
    Officers only (anyone else: ``PermissionDenied``); needs a recent reauthentication. The
    officer is narrowed to this patient's records (``Actor.investigating``) for the change, so the
    study is looked up within them and the patient sees the access event (modify,
    patient_request) under the officer's name. The channel (paper/phone) and the officer are on
    the decision and its receipt.
    """
    actor.require_recent_reauthentication()
    if not actor.is_officer:
        raise PermissionDenied("Only a privacy officer can record a paper or phone decision.")
    if channel not in (ConsentDecision.Channel.PAPER, ConsentDecision.Channel.PHONE):
        raise ValidationError({"channel": "An officer records paper or phone decisions only."})
    _check_choice(scope, decision)
    officer = actor.investigating(patient.pk)
    study = study_get(actor=officer, study_id=study_id) if study_id is not None else None
    patient = _locked_patient(officer, patient)
    row = _write_decision(
        patient=patient, scope=scope, decision=decision, study=study, policy=_policy_or_fail(), actor_id=officer.user_id,
        channel=channel, kind=ConsentDecision.Kind.CHANGE, note=note, recorded_by="privacy_office",
    )
    access_log.record(actor=officer, patient=patient, study=study, action=AccessEvent.Action.MODIFY,
                      purpose=AccessEvent.Purpose.PATIENT_REQUEST, details=_audit_details(row))
    return row


@transaction.atomic
def consent_policy_confirm(*, actor: Actor) -> list[ConsentDecision]:
    """The patient confirms their standing choices under the current policy version.

    Callers: the policy page. Patients only; needs a recent reauthentication. Each decision made
    under an older version is recorded again, unchanged, under the new one (kind
    ``reconfirmation``, with its own receipt); until then the old decisions stand under their old
    version. One access event (modify, patient_request) for the whole confirmation; none when
    there was nothing to confirm.
    """
    actor.require_recent_reauthentication()
    patient = patient_get(actor=actor)
    if patient is None or not actor.allows("consent"):  # a proxy: as consent_decision_record
        raise PermissionDenied("Only a patient can confirm their own consent.")
    patient = _locked_patient(actor, patient)
    policy, stale = selectors.pending_policy(actor=actor, patient=patient)
    if policy is None or not stale:
        return []
    rows = [
        _write_decision(
            patient=patient, scope=old.scope, decision=old.decision, study=old.study, policy=policy, actor_id=actor.user_id,
            channel=ConsentDecision.Channel.PORTAL, kind=ConsentDecision.Kind.RECONFIRMATION,
            recorded_by="proxy" if actor.is_proxy else "patient",
            proxy={"name": actor.name, "relationship": actor.proxy_relationship} if actor.is_proxy else None,
        )
        for old in stale
    ]
    access_log.record(
        actor=actor, patient=patient, action=AccessEvent.Action.MODIFY, purpose=AccessEvent.Purpose.PATIENT_REQUEST,
        details={"policy_confirmed": policy.version, "decisions": len(rows), "receipt_ids": [str(r.receipt_id) for r in rows]},
    )
    return rows


@transaction.atomic
def consent_policy_publish(*, version: int, text: str, changes: str = "", title: str = "", effective_from: dt.datetime | None = None) -> ConsentPolicy:
    """Publish a new policy version. Callers: administrators (Django admin) and the demo.

    Existing decisions keep their version until each patient confirms (``consent_policy_confirm``).
    Every patient with an account gets a notice linking to the policy page (notification centre),
    once per version. No patient data is read: nothing is recorded in the access log.
    """
    latest = ConsentPolicy.objects.order_by("-version").first()
    if latest is not None and version <= latest.version:
        raise ValidationError({"version": f"A new version must be above {latest.version}."})
    policy = ConsentPolicy(version=version, text=text, changes=changes, effective_from=effective_from or timezone.now())
    if title:
        policy.title = title
    policy.full_clean()
    policy.save()
    consent_policy_notices_send(policy=policy)
    return policy


def consent_policy_notices_send(*, policy: ConsentPolicy, patient_ids: list[int] | None = None) -> int:
    """Tell patients (``patient_ids``, or every patient with an account) about ``policy`` in
    their notification centre, once per version, dated when it took effect if that was earlier.
    Callers: ``consent_policy_publish`` and the demo. Reads no patient data; records nothing."""
    if patient_ids is None:
        with_accounts = Patient.objects.for_actor(Actor.system("Consent policy notice")).filter(user__isnull=False)
        patient_ids = list(with_accounts.values_list("pk", flat=True))
    return notices_add(
        patient_ids=patient_ids, kind=Notice.Kind.CONSENT_POLICY, key=f"policy:{policy.version}",
        subject=gettext("A new version of the consent policy"),
        body=gettext("Read what changed, and confirm or change your choices about your scans."),
        link=reverse("consent-policy"), created_at=min(policy.effective_from, timezone.now()),
    )


# --- Answers for downstream systems --------------------------------------------------------


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
def consent_check_answer(*, actor: Actor, patient: Patient, scope: str, study: Study | None = None) -> dict[str, Any]:
    """Whether the calling system may use ``patient``'s scans (or ``study``) for ``scope``, logged.

    Callers: the consent-check API as the token's actor (``Actor.for_service``), after resolving
    the patient and study through ``for_actor``. Writes one access event (consent_check, the
    scope's purpose, source api, named as the service account) with the answer in its details.
    """
    answer = selectors.effective_consent(patient, scope, study)
    result = _answer_dict(scope, answer, study)
    result["checked_at"] = _utc(timezone.now())
    access_log.record(
        actor=actor, patient=patient, study=study, action=AccessEvent.Action.CONSENT_CHECK, purpose=AUDIT_PURPOSE[scope],
        details={"consent_scope": scope, "allowed": answer.allowed, "basis": answer.basis,
                 "decision_id": answer.decision.pk if answer.decision else None, "api": "check"},
    )
    return result


@transaction.atomic
def consent_cohort_answer(*, actor: Actor, scope: str, study_uids: list[str]) -> dict[str, Any]:
    """The subset of ``study_uids`` that may be used for ``scope``, logged per patient.

    Callers: the cohort API as the token's actor. Only studies ``actor`` reaches are looked at.
    Unknown study UIDs are not permitted (and not told apart from
    refused ones, so the answer does not reveal which studies exist). One access event per
    patient concerned, written in patient-id order (each locks that patient's chain head).
    """
    wanted = list(dict.fromkeys(study_uids))
    studies = Study.objects.for_actor(actor).filter(study_uid__in=wanted).select_related("patient")
    by_patient: dict[int, list[Study]] = defaultdict(list)
    for study in studies:
        by_patient[study.patient_id].append(study)
    # One query for every decision of these patients on this scope (not two per study): the
    # latest per (patient, study) wins, a study's own decision over the all-studies one.
    latest: dict[tuple[int, int | None], str] = {}
    rows = ConsentDecision.objects.for_actor(actor).filter(patient_id__in=list(by_patient), scope=scope).order_by("decided_at", "pk")
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
        access_log.record(
            actor=actor, patient=patient, action=AccessEvent.Action.CONSENT_CHECK, purpose=AUDIT_PURPOSE[scope],
            details={"consent_scope": scope, "api": "cohort", "asked": [s.study_uid for s in group], "permitted": allowed},
        )
    return {
        "scope": scope,
        "permitted": [uid for uid in wanted if uid in permitted],
        "not_permitted": [uid for uid in wanted if uid not in permitted],
        "checked_at": _utc(timezone.now()),
    }


@transaction.atomic
def consent_fhir_read(*, actor: Actor, patient: Patient) -> dict[str, Any]:
    """The patient's decisions as a FHIR R4 searchset Bundle of Consent resources, logged.

    Callers: the FHIR Consent API as the token's actor. One access event (consent_check, purpose operations: the
    caller asked about every scope at once, so no single scope is the purpose).
    """
    decisions = list(
        ConsentDecision.objects.for_actor(actor).filter(patient_id=patient.pk)
        .select_related("policy", "study", "patient").order_by("decided_at", "pk")
    )
    bundle = fhir.bundle(decisions)
    access_log.record(
        actor=actor, patient=patient, action=AccessEvent.Action.CONSENT_CHECK, purpose=AccessEvent.Purpose.OPERATIONS,
        details={"api": "fhir", "decisions": len(decisions)},
    )
    return bundle

"""Reads of consent data.

The patient-facing selectors take the ``actor`` and start from
``ConsentDecision.objects.for_actor(actor)`` (the access log through ``audit.selectors``): a
patient reaches their own decisions and receipts, an officer who is not investigating reaches
none, and another patient's decision or receipt raises ``Http404`` like a missing one
(docs/security.md §9). The state functions (``consent_state_at``, ``effective_consent``) take a
Patient and are for other services (the consent-check API, flags, exports) that already reached
that patient through their own ``for_actor`` selector.

Nothing here writes access events: the audited reads (``consent.reads``) and the services
(``consent.services``) record one per page or answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from audit.models import AccessEvent
from audit.selectors import event_list
from consent.models import ConsentDecision, ConsentPolicy, Recipient, Scope
from consent.scopes import AUDIT_PURPOSE, SCOPES, ScopeInfo
from core.actor import Actor
from imaging.models import Patient, Study

__all__ = [
    "Answer",
    "consent_state_at",
    "current_policy",
    "default_decision",
    "effective_consent",
]


def default_decision() -> str:
    """The institution's answer where a patient has said nothing (``CONSENT_DEFAULT``)."""
    value = getattr(settings, "CONSENT_DEFAULT", ConsentDecision.Decision.REFUSED)
    return value if value in ConsentDecision.Decision.values else ConsentDecision.Decision.REFUSED


def current_policy(when: dt.datetime | None = None) -> ConsentPolicy | None:
    """The policy version in force at ``when`` (now): the latest one already effective."""
    return ConsentPolicy.objects.filter(effective_from__lte=when or timezone.now()).order_by("-effective_from", "-version").first()


def _latest(patient: Patient, scope: str, study: Study | None, when: dt.datetime | None = None) -> ConsentDecision | None:
    rows = ConsentDecision.objects.filter(patient=patient, scope=scope, study=study)
    if when is not None:
        rows = rows.filter(decided_at__lte=when)
    return rows.select_related("policy", "study").order_by("-decided_at", "-pk").first()


def decision_dict(decision: ConsentDecision) -> dict[str, Any]:
    return {
        "decision_id": decision.pk,
        "decision": decision.decision,
        "allowed": decision.allowed,
        "scope": decision.scope,
        "study_id": decision.study_id,
        "applies_to": "study" if decision.study_id else "all_studies",
        "decided_at": decision.decided_at,
        "policy_version": decision.policy.version,
        "policy_sha256": decision.policy.sha256,
        "channel": decision.channel,
        "receipt_id": str(decision.receipt_id),
    }


def consent_state_at(patient: Patient, scope: str, when: dt.datetime, study: Study | None = None) -> dict | None:
    """The decision in force for ``patient``'s ``scope`` at ``when``, or None if they had made
    none (then ``default_decision()`` applied).

    With ``study``, a decision made for that study alone wins over the all-studies one. The
    dict has decision_id, decision ("granted"/"refused"), allowed (bool), scope, study_id,
    applies_to ("study"/"all_studies"), decided_at, policy_version, policy_sha256, channel and
    receipt_id. Callers: other apps' services (flags, exports) and the consent-check API; the
    caller records any access event.
    """
    if scope not in Scope.values:
        raise ValueError(f"unknown consent scope {scope!r}")
    decision = _latest(patient, scope, study, when) if study is not None else None
    decision = decision or _latest(patient, scope, None, when)
    return decision_dict(decision) if decision else None


@dataclass
class Answer:
    allowed: bool
    decision: ConsentDecision | None  # None: the institution's default applied

    @property
    def basis(self) -> str:
        if self.decision is None:
            return "institution_default"
        return "study_decision" if self.decision.study_id else "decision"


def effective_consent(patient: Patient, scope: str, study: Study | None = None) -> Answer:
    """Whether ``scope`` is allowed now for ``patient`` (and ``study``), and on what basis."""
    decision = _latest(patient, scope, study) if study is not None else None
    decision = decision or _latest(patient, scope, None)
    if decision is None:
        return Answer(default_decision() == ConsentDecision.Decision.GRANTED, None)
    return Answer(decision.allowed, decision)


# --- The patient's pages ------------------------------------------------------------------


@dataclass
class Card:
    info: ScopeInfo
    current: ConsentDecision | None
    allowed: bool
    exceptions: list[ConsentDecision] = field(default_factory=list)
    recipients: list[Recipient] = field(default_factory=list)
    uses_before_withdrawal: int = 0
    withdrawn_at: dt.datetime | None = None

    @property
    def scope(self) -> str:
        return self.info.scope

    @property
    def audit_purpose(self) -> str:
        return AUDIT_PURPOSE[self.info.scope]


def _decisions(actor: Actor, patient: Patient) -> QuerySet[ConsentDecision]:
    """``patient``'s decisions as far as ``actor`` reaches them (none outside its reach)."""
    return ConsentDecision.objects.for_actor(actor).filter(patient_id=patient.pk)


def _current_per_key(actor: Actor, patient: Patient) -> dict[tuple[str, int | None], ConsentDecision]:
    """The latest decision for every (scope, study) the patient ever decided on."""
    current: dict[tuple[str, int | None], ConsentDecision] = {}
    rows = _decisions(actor, patient).select_related("policy", "study").order_by("decided_at", "pk")
    for decision in rows:
        current[(decision.scope, decision.study_id)] = decision  # later rows overwrite earlier ones
    return current


def consent_cards(*, actor: Actor, patient: Patient) -> list[Card]:
    """One card per scope of ``patient``'s consent page: the current choice, per-study
    exceptions, who would receive the scans, and (after a withdrawal) how many uses of that kind
    happened before it. Reads only what ``actor`` reaches (a patient: their own record); records
    nothing (the consent overview, like the scans list, is not an audited read)."""
    current = _current_per_key(actor, patient)
    recipients = list(Recipient.objects.filter(active=True))
    default_allowed = default_decision() == ConsentDecision.Decision.GRANTED
    cards = []
    for scope, info in SCOPES.items():
        general = current.get((scope, None))
        card = Card(
            info=info,
            current=general,
            allowed=general.allowed if general else default_allowed,
            exceptions=sorted(
                (d for (s, study_id), d in current.items() if s == scope and study_id is not None),
                key=lambda d: d.decided_at,
            ),
            recipients=[r for r in recipients if r.scope == scope],
        )
        if general is not None and not general.allowed:
            earlier_yes = _decisions(actor, patient).filter(
                scope=scope, study=None, decision=ConsentDecision.Decision.GRANTED, decided_at__lt=general.decided_at,
            ).exists()
            # Only AI training and research have their own purpose in the log; commercial and
            # teaching share "operations" with the hospital's own work, so a count would mislead.
            if earlier_yes and AUDIT_PURPOSE[scope] == scope:
                card.withdrawn_at = general.decided_at
                card.uses_before_withdrawal = (
                    event_list(actor=actor, purposes=[AUDIT_PURPOSE[scope]], until=general.decided_at)
                    .filter(patient_id=patient.pk)
                    .exclude(action=AccessEvent.Action.CONSENT_CHECK)
                    .count()
                )
        cards.append(card)
    return cards


def pending_policy(*, actor: Actor, patient: Patient) -> tuple[ConsentPolicy | None, list[ConsentDecision]]:
    """The current policy and ``patient``'s standing decisions made under an older version
    (empty when there is nothing to re-confirm), as far as ``actor`` reaches them."""
    policy = current_policy()
    if policy is None:
        return None, []
    stale = [d for d in _current_per_key(actor, patient).values() if d.policy_id != policy.pk and d.policy.version < policy.version]
    return policy, sorted(stale, key=lambda d: (d.scope, d.study_id or 0))


def policies_between(old_version: int, new_version: int) -> list[ConsentPolicy]:
    return list(ConsentPolicy.objects.filter(version__gt=old_version, version__lte=new_version).order_by("version"))


def decision_list(*, actor: Actor) -> QuerySet[ConsentDecision]:
    """Every decision ``actor`` reaches, newest first: a patient's own history; none for an
    officer who is not investigating, an administrator or an anonymous request."""
    return (
        ConsentDecision.objects.for_actor(actor)
        .select_related("policy", "study", "actor")
        .order_by("-decided_at", "-pk")
    )


def decision_get(*, actor: Actor, receipt_id: uuid.UUID) -> ConsentDecision:
    """One decision ``actor`` reaches, by receipt id; ``Http404`` for a missing or foreign one."""
    decision = decision_list(actor=actor).select_related("patient").filter(receipt_id=receipt_id).first()
    if decision is None:
        raise Http404("No such receipt.")
    return decision


@dataclass
class PartnerRow:
    recipient: Recipient
    accesses: int
    last_access: dt.datetime | None
    consent_checks: int
    allowed: bool


def partner_list(*, actor: Actor, patient: Patient) -> list[PartnerRow]:
    """The organisations the hospital shares with, and which of them used ``patient``'s scans
    (the access log's own selector, matched on the organisation's name), as far as ``actor``
    reaches them. Records nothing: ``consent.reads.consent_partners_open`` records the page."""
    cards = {card.scope: card for card in consent_cards(actor=actor, patient=patient)}
    rows = []
    for recipient in Recipient.objects.all().order_by("-active", "scope", "name"):
        events = event_list(actor=actor, organization=recipient.name).filter(patient_id=patient.pk)
        stats = events.order_by().aggregate(
            accesses=Count("pk", filter=~Q(action=AccessEvent.Action.CONSENT_CHECK)),
            last=Max("occurred_at", filter=~Q(action=AccessEvent.Action.CONSENT_CHECK)),
            checks=Count("pk", filter=Q(action=AccessEvent.Action.CONSENT_CHECK)),
        )
        rows.append(
            PartnerRow(recipient, stats["accesses"], stats["last"], stats["checks"], cards[recipient.scope].allowed)
        )
    return rows

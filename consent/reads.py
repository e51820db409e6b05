"""Audited reads of the patient's consent pages: select and record in one transaction.

The history, a receipt (page and signed JSON) and the partners page show the patient's own
decisions and who used their scans, so each look is an access event in the patient's log,
written in the same transaction as the read (docs/security.md §13). The views call these and
only present what they return; they never record. Each takes the ``actor`` and reads through
``consent.selectors`` (``for_actor``): another patient's receipt, or an account without a patient
record of its own, is ``Http404`` and nothing is recorded.

The consent overview (``consent.selectors.consent_cards``), like the scans list, records nothing.
Changes and the answers given to other systems are in ``consent.services``.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from audit.models import AccessEvent
from consent import selectors
from consent.models import ConsentDecision
from core import access_log
from core.actor import Actor
from imaging.selectors import patient_own


@transaction.atomic
def consent_history_open(*, actor: Actor) -> list[ConsentDecision]:
    """The patient opens the history of their consent decisions, newest first.

    Callers: the history page. Patients only (``Http404`` otherwise, nothing recorded). Records one
    access event (view, details ``{"page": "consent_history"}``).
    """
    patient = patient_own(actor=actor)
    decisions = list(selectors.decision_list(actor=actor))
    access_log.record(actor=actor, patient=patient, action=AccessEvent.Action.VIEW, details={"page": "consent_history"})
    return decisions


@transaction.atomic
def consent_receipt_open(*, actor: Actor, receipt_id: uuid.UUID) -> ConsentDecision:
    """The patient opens the receipt of one of their decisions.

    Callers: the receipt page. ``Http404`` for a missing receipt or another patient's, recording
    nothing. Records one access event (view, details ``{"page": "consent_receipt", "receipt_id": ...}``).
    """
    decision = selectors.decision_get(actor=actor, receipt_id=receipt_id)
    access_log.record(
        actor=actor, patient=decision.patient, action=AccessEvent.Action.VIEW,
        details={"page": "consent_receipt", "receipt_id": str(decision.receipt_id)},
    )
    return decision


@transaction.atomic
def consent_receipt_download(*, actor: Actor, receipt_id: uuid.UUID) -> ConsentDecision:
    """The patient downloads the signed JSON receipt of one of their decisions.

    Callers: the receipt download. ``Http404`` for a missing receipt or another patient's,
    recording nothing. Records one access event (download, details ``{"page":
    "consent_receipt_json", "receipt_id": ...}``). The receipt carries no scan and no name (a
    pseudonym), so it asks for no fresh password, unlike the downloads of docs/security.md §6.
    """
    decision = selectors.decision_get(actor=actor, receipt_id=receipt_id)
    access_log.record(
        actor=actor, patient=decision.patient, action=AccessEvent.Action.DOWNLOAD,
        details={"page": "consent_receipt_json", "receipt_id": str(decision.receipt_id)},
    )
    return decision


@transaction.atomic
def consent_partners_open(*, actor: Actor) -> list[selectors.PartnerRow]:
    """The patient opens "Who may use my scans": the partner organisations and which of them
    used or asked about the patient's scans (read from the access log).

    Callers: the partners page. Patients only (``Http404`` otherwise, nothing recorded). Reading
    the access log is logged too: one access event (view, details ``{"page": "consent_partners"}``).
    """
    patient = patient_own(actor=actor)
    rows = selectors.partner_list(actor=actor, patient=patient)
    access_log.record(actor=actor, patient=patient, action=AccessEvent.Action.VIEW, details={"page": "consent_partners"})
    return rows

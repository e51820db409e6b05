"""Consent history and partner organisations for the demo patient (called by ``make_demo_data``).

Two policy versions (the second published two months ago, so the demo patient is asked to
re-confirm), a year of decisions (research yes; AI training no, then yes; a paper-form teaching
decision entered by the privacy office; a per-study research exception), and the organisations
that appear in the demo access log, under the same names (``audit.demo``), so "Who may use my
scans" links them up.
"""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.demo import AI_VENDOR, OFFICER_NAME, RESEARCH, seeded_time
from audit.models import AccessEvent
from audit.services import record_access
from consent import services
from consent.models import ConsentDecision, ConsentPolicy, Recipient, Scope
from imaging.models import Patient

POLICY_V1 = """St. Example Hospital may use imaging studies beyond your own care only for the uses you agree to: AI training, research, commercial licensing and teaching.

Before any scan leaves the hospital for these uses, names, dates of birth, ID numbers and free-text notes are removed (de-identification after DICOM PS3.15 Annex E).

You can change each choice at any time in the portal, by post or by phone. A change applies from the moment it is recorded."""

POLICY_V2 = POLICY_V1 + """

Organisations receiving scans for AI training must delete their copies within 30 days of a withdrawal and confirm the deletion to the privacy office.

Every organisation that asks whether it may use your scans is shown in your access log, with the answer it was given."""

CHANGES_V2 = """AI companies must now delete their copies within 30 days after you say no, and confirm it.
Every question an organisation asks about your consent now appears in your access log."""

RECIPIENTS = [
    {"name": AI_VENDOR, "kind": Recipient.Kind.AI_VENDOR, "scope": Scope.AI_TRAINING,
     "receives": Recipient.Receives.DEIDENTIFIED,
     "purpose": "Builds a tool that flags urgent findings on chest X-rays so radiologists read them first.",
     "retention": "For the life of the contract (at most 5 years); deleted within 30 days of a withdrawal."},
    {"name": RESEARCH, "kind": Recipient.Kind.RESEARCHER, "scope": Scope.RESEARCH,
     "receives": Recipient.Receives.DEIDENTIFIED,
     "purpose": "Ethics-approved studies of lung disease across the region's hospitals.",
     "retention": "Until each study ends, at most 10 years."},
    {"name": "Harbour Medical School", "kind": Recipient.Kind.TEACHING, "scope": Scope.TEACHING,
     "receives": Recipient.Receives.DEIDENTIFIED,
     "purpose": "Teaching files for radiology trainees.",
     "retention": "While the teaching file is in use; reviewed every 2 years."},
    {"name": "Meridian Imaging Devices", "kind": Recipient.Kind.COMMERCIAL, "scope": Scope.COMMERCIAL,
     "receives": Recipient.Receives.DEIDENTIFIED,
     "purpose": "Tests new scanner software against real-world images under a data licence.",
     "retention": "For the 3-year licence term."},
]


def _policy(version: int, text: str, changes: str, effective_from: dt.datetime) -> ConsentPolicy:
    policy = ConsentPolicy.objects.filter(version=version).first()
    if policy is None:
        policy = ConsentPolicy(version=version, text=text, changes=changes, effective_from=effective_from)
        policy.full_clean()
        policy.save()
    return policy


@transaction.atomic
def build_demo_consent(patient: Patient) -> None:
    """Create the demo policies, partner organisations and ``patient``'s consent history.

    Idempotent for the shared parts (policies, organisations); the patient's history is only
    written when they have none yet. Each decision gets its receipt and access event, dated in
    the past."""
    # Policies take effect at midnight (hospital time); decisions at seeded working-day times.
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    v1 = _policy(1, POLICY_V1, "", midnight - dt.timedelta(days=420))
    _policy(2, POLICY_V2, CHANGES_V2, midnight - dt.timedelta(days=60))
    for item in RECIPIENTS:
        Recipient.objects.get_or_create(name=item["name"], defaults=item)
    if ConsentDecision.objects.filter(patient=patient).exists():
        return
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    officer = User.objects.filter(role=User.Role.PRIVACY_OFFICER).order_by("pk").first()
    studies = list(patient.studies.order_by("study_date", "pk"))
    rng = random.Random(f"consent-{patient.pk}")
    plan = [
        # (days ago, scope, decision, channel, study, note)
        (365, Scope.RESEARCH, "granted", "portal", None, ""),
        (340, Scope.AI_TRAINING, "refused", "portal", None, ""),
        (250, Scope.AI_TRAINING, "granted", "portal", None, ""),
        (200, Scope.TEACHING, "refused", "paper", None, "Form PO-2025-0412, received by post"),
        (150, Scope.RESEARCH, "refused", "portal", studies[1] if len(studies) > 1 else None, ""),
    ]
    for days, scope, decision, channel, study, note in plan:
        if scope == Scope.RESEARCH and decision == "refused" and study is None:
            continue  # no second study: skip the exception rather than refuse research outright
        when = seeded_time(rng, days)
        by_office = channel != "portal"
        row = services._write_decision(
            patient=patient, scope=scope, decision=decision, study=study, policy=v1,
            actor_id=(officer.pk if officer else None) if by_office else patient.user_id, channel=channel,
            kind=ConsentDecision.Kind.CHANGE,
            note=note, recorded_by="privacy_office" if by_office else "patient", decided_at=when,
        )
        actor = (
            {"actor_type": "privacy_office", "actor_name": (officer.public_name if officer else "") or OFFICER_NAME,
             "organization": settings.HOSPITAL_NAME, "role": "Privacy officer"}
            if by_office else {"actor_type": "patient", "actor_name": "Patient (self)"}
        )
        record_access(
            patient=patient, study=study, action=AccessEvent.Action.MODIFY, purpose=AccessEvent.Purpose.PATIENT_REQUEST,
            source=AccessEvent.Source.PORTAL, occurred_at=when, details=services._audit_details(row), **actor,
        )

"""A believable year of access events for the demo patient (called by ``make_demo_data``)."""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record_access
from imaging.models import Patient, Study

# The demo's privacy officer (make_demo_data gives the officer account this name): patients read
# an officer's name, never an email address (docs/security.md §19).
OFFICER_NAME = "Dana Whitfield"

SECOND_OPINION = "Mercy University Hospital"
AI_VENDOR = "Northlight AI (chest X-ray triage)"
RESEARCH = "Regional Imaging Research Network"

# (days ago, hour, who, action, purpose, study index or None); study index wraps around.
CLINICIANS = [
    ("clinician", "Dr Ada Reyes", "Radiologist", None),
    ("clinician", "Dr Tom Okafor", "General practitioner (referrer)", None),
    ("clinician", "Dr Priya Natarajan", "Pulmonologist", None),
    ("staff", "J. Morales", "Radiographer", None),
    ("staff", "Front desk (records)", "Medical records clerk", None),
]


def _at(rng: random.Random, days_ago: int) -> dt.datetime:
    base = timezone.now() - dt.timedelta(days=days_ago)
    return base.replace(hour=rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17]), minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)


@transaction.atomic
def build_demo_access_log(patient: Patient) -> int:
    """Record ~60 events over the last 12 months against ``patient``'s studies (oldest first, so
    the chain reads like real life) and return how many were written. Idempotent enough for a
    demo: each event has a source_event_id, so running it twice records nothing new."""
    hospital = settings.HOSPITAL_NAME
    studies = list(Study.objects.filter(patient=patient).order_by("study_date", "pk"))
    rng = random.Random(patient.pk)

    def study(i: int | None) -> Study | None:
        return studies[i % len(studies)] if studies and i is not None else None

    plan: list[dict] = []
    # Routine care across the year: each study read and revisited by the care team.
    for n, days in enumerate([350, 349, 330, 300, 299, 280, 240, 239, 238, 200, 170, 169, 140, 120, 90, 89, 60, 45, 30, 29, 14, 7, 3]):
        actor_type, name, role, _ = CLINICIANS[n % len(CLINICIANS)]
        plan.append({"days": days, "actor_type": actor_type, "actor_name": name, "role": role, "organization": hospital,
                     "action": "view", "purpose": "treatment", "study": study(n), "source": "api"})
    # A billing query and an operations audit.
    plan.append({"days": 295, "actor_type": "staff", "actor_name": "Billing office", "role": "Coder", "organization": hospital,
                 "action": "query", "purpose": "payment", "study": study(1), "source": "api"})
    plan.append({"days": 150, "actor_type": "service", "actor_name": "PACS quality check", "role": "Automated system",
                 "organization": hospital, "action": "view", "purpose": "operations", "study": study(2), "source": "api"})
    # A second opinion at another hospital: shared, then read there.
    for days, name, action in [(210, "Dr Lena Fischer", "share"), (209, "Dr Lena Fischer", "view"), (205, "Dr Lena Fischer", "view"),
                               (204, "Dr Samir Haddad", "view")]:
        plan.append({"days": days, "actor_type": "clinician", "actor_name": name, "role": "Thoracic radiologist",
                     "organization": SECOND_OPINION if action == "view" else hospital, "action": action,
                     "purpose": "treatment", "study": study(0), "source": "api"})
    # An emergency department visit at night.
    plan.append({"days": 95, "actor_type": "clinician", "actor_name": "Dr Kim Lee", "role": "Emergency physician",
                 "organization": hospital, "action": "view", "purpose": "emergency", "study": study(0), "source": "api"})
    # The AI triage vendor analysing chest images as they arrive.
    for days in (300, 240, 170, 89, 29, 6):
        plan.append({"days": days, "actor_type": "ai_vendor", "actor_name": "Triage model v3", "role": "Automated analysis",
                     "organization": AI_VENDOR, "action": "view", "purpose": "ai_inference", "study": study(days), "source": "api"})
    # A research export, de-identified, after a consent check.
    plan.append({"days": 130, "actor_type": "researcher", "actor_name": "Data broker", "role": "Research data service",
                 "organization": RESEARCH, "action": "consent_check", "purpose": "research", "study": None, "source": "api"})
    plan.append({"days": 129, "actor_type": "researcher", "actor_name": "Data broker", "role": "Research data service",
                 "organization": RESEARCH, "action": "deidentify", "purpose": "research", "study": study(1), "source": "api"})
    plan.append({"days": 129, "actor_type": "researcher", "actor_name": "Data broker", "role": "Research data service",
                 "organization": RESEARCH, "action": "export", "purpose": "research", "study": study(1), "source": "api"})
    # The privacy office reviewing accesses after a routine audit.
    for days in (60, 59):
        plan.append({"days": days, "actor_type": "privacy_office", "actor_name": OFFICER_NAME, "role": "Privacy officer",
                     "organization": hospital, "action": "view", "purpose": "privacy_investigation", "study": study(0), "source": "api"})
    # A request that was refused.
    plan.append({"days": 75, "actor_type": "service", "actor_name": "Insurer portal", "role": "Claims system",
                 "organization": "Acme Health Insurance", "action": "query", "purpose": "payment", "study": None,
                 "outcome": "denied", "source": "api"})
    # The patient's own visits.
    for n, days in enumerate([320, 260, 180, 100, 40, 10, 2]):
        plan.append({"days": days, "actor_type": "patient", "actor_name": "Patient (self)", "role": "", "organization": "",
                     "action": "download" if n == 4 else "view", "purpose": "patient_request", "study": study(n), "source": "portal"})

    for i, item in enumerate(plan):
        item["occurred_at"] = _at(rng, item.pop("days"))
        item["seq_hint"] = i
    plan.sort(key=lambda item: item["occurred_at"])
    written = 0
    for item in plan:
        ref = f"demo/{patient.pk}-{item.pop('seq_hint')}"
        if item["source"] == "portal":
            item["details"] = {"page": "study"}
            ref = None
        else:
            item["details"] = {"reported_by": "demo"}
        sid = ref
        if sid is not None and Patient.objects.filter(pk=patient.pk, access_events__source_event_id=sid).exists():
            continue
        record_access(patient=patient, source_event_id=sid, actor_ref="", **item)
        written += 1
    return written

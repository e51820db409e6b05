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

# The people around each study. Day-of reads are done where the study was made (its institution);
# the referrer is the study's own referring physician (DICOM PN "Family^Given^^Prefix").
STAFF_BY_INSTITUTION = {
    "St. Example Hospital": (("staff", "J. Morales", "Radiographer"), ("clinician", "Dr Ada Reyes", "Radiologist")),
    "Northgate Imaging Center": (("staff", "P. Novak", "MRI technologist"), ("clinician", "Dr Ingrid Holm", "Neuroradiologist")),
    "Riverside Community Clinic": (("staff", "S. Kim", "Sonographer"), ("clinician", "Dr Omar Farouk", "Cardiologist")),
}
# The triage model reads chest radiographs only (consent.demo's recipient: "urgent findings on
# chest X-rays"); a study it may read is a DX/CR study of the chest.
AI_MODALITIES = {"DX", "CR"}
# The seeded log covers a year (older studies appear through their later readers).
LOG_DAYS = 364


def ai_may_read(study: Study) -> bool:
    return bool(AI_MODALITIES & set(study.modalities.split(","))) and "CHEST" in study.description.upper()


def seeded_time(rng: random.Random, days_ago: float, *, earliest: dt.datetime | None = None) -> dt.datetime:
    """A past moment ``days_ago`` days back at a random working-day time (minute and second
    random too, so seeded rows never share the minute the demo was made at), never before
    ``earliest`` and never later than an hour ago."""
    now = timezone.localtime()
    base = now - dt.timedelta(days=days_ago)
    when = base.replace(hour=rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17]), minute=rng.randrange(60),
                        second=rng.randrange(60), microsecond=0)
    if earliest is not None and when < earliest:
        when = earliest + dt.timedelta(minutes=rng.randrange(20, 180), seconds=rng.randrange(60))
    return min(when, now - dt.timedelta(hours=1, minutes=rng.randrange(60)))


def _person(pn: str) -> str:
    family, given, _middle, prefix, *_ = (pn.split("^") + ["", "", "", ""])[:4]
    return " ".join(part for part in (prefix, given, family) if part) or "Referring physician"


def _acquired(study: Study) -> dt.datetime:
    if study.study_date is None:  # an undated study: as if made before the story starts
        return timezone.now() - dt.timedelta(days=730)
    when = dt.datetime.combine(study.study_date, study.study_time or dt.time(9, 0))
    return timezone.make_aware(when) if timezone.is_naive(when) else when


@transaction.atomic
def build_demo_access_log(patient: Patient) -> int:
    """Record ~60 events over the last year against ``patient``'s studies (oldest first, so
    the chain reads like real life) and return how many were written. Idempotent enough for a
    demo: each event has a source_event_id, so running it twice records nothing new.

    The story holds together: nobody reads a study before it was made; each study is checked by
    the person who made it and read by a radiologist the same day, then opened by the doctor who
    asked for it; the AI triage vendor reads only chest radiographs; times fall at random minutes
    in working hours (an emergency at night)."""
    hospital = settings.HOSPITAL_NAME
    studies = list(Study.objects.filter(patient=patient).order_by("study_date", "pk"))
    rng = random.Random(patient.pk)
    now = timezone.now()

    def days_since(study: Study) -> float:
        return (now - _acquired(study)).total_seconds() / 86400

    def made_by(days_ago: float, pick: int) -> Study | None:
        """The ``pick``-th (wrapping) of the studies that already existed ``days_ago`` days back."""
        existing = [s for s in studies if days_since(s) > days_ago + 1]
        return existing[pick % len(existing)] if existing else None

    def event(when: dt.datetime, actor_type: str, name: str, role: str, organization: str, action: str, purpose: str,
              study: Study | None, **extra) -> dict:
        return {"occurred_at": when, "actor_type": actor_type, "actor_name": name, "role": role,
                "organization": organization, "action": action, "purpose": purpose, "study": study,
                "source": extra.pop("source", "api"), **extra}

    plan: list[dict] = []
    for study in studies:
        acquired = _acquired(study)
        tech, reader = STAFF_BY_INSTITUTION.get(study.institution, STAFF_BY_INSTITUTION["St. Example Hospital"])
        org = study.institution or hospital
        # The day itself: the radiographer checks the images, a radiologist reports them.
        plan.append(event(acquired + dt.timedelta(minutes=rng.randrange(8, 25)), *tech, org, "view", "treatment", study))
        plan.append(event(acquired + dt.timedelta(hours=rng.randrange(2, 6), minutes=rng.randrange(60)), *reader, org,
                          "view", "treatment", study))
        # The doctor who asked for it reads the result within a few days.
        referrer = _person(study.referring_physician)
        plan.append(event(seeded_time(rng, days_since(study) - rng.randrange(1, 4), earliest=acquired), "clinician", referrer,
                          "Referring physician", org, "view", "treatment", study))
        if ai_may_read(study):
            # Triage as the radiograph arrives, and once more after the vendor's model update.
            plan.append(event(acquired + dt.timedelta(minutes=rng.randrange(2, 6)), "ai_vendor", "Triage model v3",
                              "Automated analysis", AI_VENDOR, "view", "ai_inference", study))
            plan.append(event(seeded_time(rng, days_since(study) - 24, earliest=acquired), "ai_vendor", "Triage model v3",
                              "Automated analysis", AI_VENDOR, "view", "ai_inference", study))
    # Follow-up care across the year: chest studies revisited by the lung specialist, the
    # referring doctors looking back, the records office answering requests.
    for n, days in enumerate([350, 330, 315, 300, 270, 240, 220, 200, 170, 140, 120, 105, 90, 60, 45, 30, 21, 14, 7, 3]):
        chest = [s for s in studies if "CHEST" in s.description.upper() and days_since(s) > days + 1]
        earlier = made_by(days, n)
        if n % 3 == 0 and chest:
            plan.append(event(seeded_time(rng, days), "clinician", "Dr Priya Natarajan", "Pulmonologist", hospital,
                              "view", "treatment", chest[n % len(chest)]))
        elif n % 3 == 2:
            plan.append(event(seeded_time(rng, days), "staff", "Front desk (records)", "Medical records clerk", hospital,
                              "view", "operations", earlier))
        elif earlier is not None:
            plan.append(event(seeded_time(rng, days), "clinician", _person(earlier.referring_physician), "Referring physician",
                              hospital, "view", "treatment", earlier))
    first = studies[0] if studies else None
    # A billing query and an operations audit.
    plan.append(event(seeded_time(rng, 295), "staff", "Billing office", "Coder", hospital, "query", "payment", made_by(295, 1)))
    plan.append(event(seeded_time(rng, 150), "service", "PACS quality check", "Automated system", hospital, "view",
                      "operations", made_by(150, 2)))
    # A second opinion on the chest CT at another hospital: shared, then read there.
    for days, name, action in [(210, "Dr Lena Fischer", "share"), (209, "Dr Lena Fischer", "view"),
                               (205, "Dr Lena Fischer", "view"), (204, "Dr Samir Aziz", "view")]:
        plan.append(event(seeded_time(rng, days), "clinician", name, "Thoracic radiologist",
                          SECOND_OPINION if action == "view" else hospital, action, "treatment", first))
    # An emergency department visit at night.
    night = (now - dt.timedelta(days=95)).replace(hour=2, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)
    plan.append(event(night, "clinician", "Dr Kim Lee", "Emergency physician", hospital, "view", "emergency", first))
    # A research export of the chest CT (a lung-disease network), de-identified, after a consent check.
    check = seeded_time(rng, 130)
    plan.append(event(check, "researcher", "Data broker", "Research data service", RESEARCH, "consent_check", "research", None))
    for minutes, action in ((35, "deidentify"), (52, "export")):
        plan.append(event(check + dt.timedelta(days=1, minutes=minutes), "researcher", "Data broker", "Research data service",
                          RESEARCH, action, "research", first))
    # The privacy office reviewing accesses after a routine audit.
    for days in (60, 59):
        plan.append(event(seeded_time(rng, days), "privacy_office", OFFICER_NAME, "Privacy officer", hospital, "view",
                          "privacy_investigation", first))
    # A request that was refused.
    plan.append(event(seeded_time(rng, 75), "service", "Insurer portal", "Claims system", "Acme Health Insurance", "query",
                      "payment", None, outcome="denied"))
    # The patient's own visits, to studies they already had.
    for n, days in enumerate([320, 260, 180, 100, 40, 10, 2]):
        plan.append(event(seeded_time(rng, days), "patient", "Patient (self)", "", "", "download" if n == 4 else "view",
                          "patient_request", made_by(days, n), source="portal"))

    # The log covers the last year; a look at a study needs the study; nothing is in the future.
    needs_study = {"view", "download", "share", "deidentify", "export"}
    start = now - dt.timedelta(days=LOG_DAYS)
    plan = [item for item in plan if start < item["occurred_at"] < now and (item["study"] or item["action"] not in needs_study)]
    plan.sort(key=lambda item: item["occurred_at"])
    for i, item in enumerate(plan):
        item["seq_hint"] = i
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

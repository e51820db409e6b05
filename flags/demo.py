"""Demo data for flags: one realistic report, called by ``manage.py make_demo_data``."""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AccessEvent
from core.actor import Actor, Kind
from flags.models import Flag, FlagEvent
from flags.services import S, _event, _notify_flag, _set_status, _study_status_sync, deadline_days
from notices.models import Notice


@transaction.atomic
def build_demo_flag(patient, officer, *, email: bool = True) -> Flag:
    """The patient questions an AI vendor's access ("I don't know this company"); ``officer``
    has claimed it and asked for more information, so the patient has a reply waiting.

    Flags the patient's latest ``ai_vendor`` access event if there is one, else their newest
    study. ``patient`` is an ``imaging.Patient``; ``officer`` a privacy-officer ``User``.
    Written directly (not through the services, which date everything now) and back-dated by
    a week so the timeline looks lived-in; the services' own rules (table, notices) still apply.
    The timeline names the patient and the officer as they would be had they acted themselves.
    ``email=False`` leaves the patient's notice in the portal only (``make_demo_data``: the demo's
    addresses are example.com ones).
    """
    by_patient = Actor(kind=Kind.PATIENT, name="Patient (self)", user_id=patient.user_id, patient_ids=frozenset({patient.pk}))
    by_officer = Actor(
        kind=Kind.PRIVACY_OFFICER, name=officer.public_name, user_id=officer.pk, organization=settings.HOSPITAL_NAME,
        role="Privacy officer",
    ).investigating(patient.pk)
    event = AccessEvent.objects.filter(patient=patient, actor_type=AccessEvent.ActorType.AI_VENDOR).order_by("-occurred_at", "-pk").first()
    study = None if event is not None else patient.studies.order_by("-study_date", "-pk").first()
    if event is None and study is None:
        raise ValueError("The demo patient needs an AI-vendor access event or a study to flag.")
    # A week ago in the evening, when the patient read their log (a report cannot predate what it
    # reports: at least a day after the access); the office answers over the next day. Every
    # timeline entry carries these times, so the page's "Received" and its first entry agree.
    now = timezone.now()
    rng = random.Random(f"flag-{patient.pk}")
    created = (timezone.localtime(now) - dt.timedelta(days=7)).replace(
        hour=19, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)
    if event is not None:
        created = max(created, event.occurred_at + dt.timedelta(days=1))
    created = min(created, now - dt.timedelta(hours=2))
    claimed = created + (min(dt.timedelta(hours=14, minutes=rng.randrange(60)), (now - created) / 3))
    answered = claimed + (min(dt.timedelta(minutes=rng.randrange(25, 70)), (now - claimed) / 3))
    if event is not None:
        category = Flag.Category.UNFAMILIAR_ACCESSOR
        org = event.organization or event.actor_name or "this company"
        description = (
            f"My access log says {org} looked at my scans for an AI project. I don't know this company "
            "and I don't remember agreeing to this. Who are they and why did they get my images?"
        )
    else:
        category = Flag.Category.NOT_MY_SCAN
        description = "I never had this scan. I have not been to this department."
    flag = Flag(
        patient=patient, study=study, access_event=event, raised_by=patient.user, category=category,
        description=description, created_at=created, updated_at=created,
        due_at=created + dt.timedelta(days=deadline_days()),
    )
    flag.full_clean()
    flag.save()
    _event(flag, FlagEvent.Kind.CREATED, by_patient, to_status=flag.status, text=description)
    _study_status_sync(actor=by_patient, study=study)
    flag.assignee = officer
    flag.save(update_fields=["assignee"])
    _event(flag, FlagEvent.Kind.CLAIMED, by_officer)
    _set_status(flag, S.IN_REVIEW, by_officer)
    _event(
        flag, FlagEvent.Kind.MESSAGE_TO_PATIENT, by_officer,
        text=(
            "Thank you for telling us. We are checking this access with the company and our AI programme "
            "team. Do you remember signing a consent form for research or AI use at any appointment? "
            "If so, roughly when?"
        ),
    )
    _set_status(flag, S.NEEDS_INFO, by_officer)
    _notify_flag(flag, "The privacy office needs more information from you. Sign in to reply.", email=email)
    # The services stamp "now"; date the timeline as it happened: received, claimed and put in
    # review the next morning, the question and its status change a little later.
    times = [created, claimed, claimed, answered, answered]
    for row, when in zip(flag.events.order_by("pk"), times, strict=False):
        FlagEvent.objects.filter(pk=row.pk).update(created_at=when)
    Flag.objects.filter(pk=flag.pk).update(updated_at=answered)
    flag.updated_at = answered
    Notice.objects.filter(patient=patient, key=f"flag:{flag.pk}").update(created_at=answered)
    return flag

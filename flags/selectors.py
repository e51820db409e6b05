"""Reads for flags, narrowed to the user (STYLE.md "Logic and data").

Patients: their own flags, studies and access events; anything else is ``Http404``, the same as
a missing id. Officers: the queue and dashboard hold no patient data (ids, categories, dates,
statuses); the patient's data behind a flag is read only through ``flag_for_officer``, which
answers ``Http404`` unless the officer holds the flag, and the page that shows it records one
access event (privacy investigation) for the patient to see. None of these write anything.
"""

from __future__ import annotations

import datetime as dt
import importlib
import statistics
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent
from flags.models import Flag, FlagEvent, Notice
from imaging.models import Instance, IntegrityAlert, Patient, Study
from imaging.selectors import patient_for_user

# Rows of access history shown on the officer's flag page: enough for an investigation, bounded
# so a patient with years of history does not make the page slow.
HISTORY_LIMIT = 100
CONSENT_SCOPES = (
    ("ai_training", "AI training"),
    ("research", "Research"),
    ("commercial", "Commercial licensing"),
    ("teaching", "Teaching"),
)


def _is_officer(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_privacy_officer", False))


def require_officer(user) -> None:
    """Officer pages answer 404 to everyone else: a patient learns nothing about them."""
    if not _is_officer(user):
        raise Http404("No such page.")


# --- Patient side --------------------------------------------------------------------------


def access_event_for_user(user, event_id: int) -> AccessEvent:
    """One of the user's own access-log entries; ``Http404`` for another patient's or a missing one."""
    event = AccessEvent.objects.filter(patient__user=user, pk=event_id).select_related("study").first() if getattr(user, "is_authenticated", False) else None
    if event is None:
        raise Http404("No such access-log entry.")
    return event


def flags_for_user(user) -> QuerySet[Flag]:
    """The reports the patient raised, newest first (flags the integrity check raised are the
    office's own work and are not listed)."""
    patient = patient_for_user(user)
    if patient is None:
        return Flag.objects.none()
    return (
        Flag.objects.filter(patient=patient, integrity_alert__isnull=True)
        .select_related("study", "access_event")
        .order_by("-created_at", "-pk")
    )


def flag_for_user(user, flag_id: int) -> Flag:
    flag = flags_for_user(user).filter(pk=flag_id).select_related("patient").first()
    if flag is None:
        raise Http404("No such report.")
    return flag


def patient_timeline(flag: Flag) -> list[FlagEvent]:
    """What the patient sees of the timeline: everything but the office's internal working."""
    return [e for e in flag.events.all() if e.visible_to_patient]


def notices_for_user(user, *, limit: int = 20) -> list[Notice]:
    patient = patient_for_user(user)
    if patient is None:
        return []
    return list(Notice.objects.filter(patient=patient).select_related("incident")[:limit])


# --- Office side -----------------------------------------------------------------------------


@dataclass
class QueueFilters:
    status: str = "active"  # active (not closed), all, or one status
    category: str = ""
    assignee: str = ""  # "", "me", "none", or an officer's id
    older_than_days: int | None = None
    overdue: bool = False
    sort: str = "due"


SORTS = {
    "due": ("due_at", "pk"),
    "newest": ("-created_at", "-pk"),
    "oldest": ("created_at", "pk"),
    "updated": ("-updated_at", "-pk"),
}


def queue_for_officer(user, filters: QueueFilters) -> QuerySet[Flag]:
    """The privacy office's queue (every flag, metadata only; the template shows no patient data)."""
    require_officer(user)
    qs = Flag.objects.select_related("assignee")
    if filters.status == "active":
        qs = qs.exclude(status__in=Flag.CLOSED)
    elif filters.status in Flag.Status.values:
        qs = qs.filter(status=filters.status)
    if filters.category in Flag.Category.values:
        qs = qs.filter(category=filters.category)
    if filters.assignee == "me":
        qs = qs.filter(assignee=user)
    elif filters.assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee.isdigit():
        qs = qs.filter(assignee_id=int(filters.assignee))
    now = timezone.now()
    if filters.older_than_days:
        qs = qs.filter(created_at__lte=now - dt.timedelta(days=filters.older_than_days))
    if filters.overdue:
        qs = qs.exclude(status__in=Flag.CLOSED).filter(due_at__lt=now)
    return qs.order_by(*SORTS.get(filters.sort, SORTS["due"]))


def officers() -> QuerySet[User]:
    return User.objects.filter(role=User.Role.PRIVACY_OFFICER, is_active=True).order_by("email")


def flag_for_officer(user, flag_id: int) -> Flag:
    """A flag the officer holds (claimed or assigned), with its patient; ``Http404`` otherwise,
    the same as a missing flag (docs/security.md §9)."""
    require_officer(user)
    flag = (
        Flag.objects.filter(pk=flag_id, assignee=user)
        .select_related("patient", "study", "access_event", "access_event__study", "integrity_alert", "assignee")
        .first()
    )
    if flag is None:
        raise Http404("No such flag.")
    return flag


def flag_in_queue(user, flag_id: int) -> Flag:
    """Any flag, for claiming: the officer sees only its metadata until they hold it."""
    require_officer(user)
    flag = Flag.objects.filter(pk=flag_id).first()
    if flag is None:
        raise Http404("No such flag.")
    return flag


def consent_state_lookup():
    """``consent.selectors.consent_state_at`` if the consent app provides it, else None (then the
    flag page says consent is not available rather than guessing)."""
    try:
        module = importlib.import_module("consent.selectors")
    except ImportError:
        return None
    return getattr(module, "consent_state_at", None)


def _consent_default() -> str:
    module = importlib.import_module("consent.selectors")
    default = getattr(module, "default_decision", None)
    return str(default()) if default else ""


@dataclass
class ConsentRow:
    scope: str
    label: str
    state: dict | None  # consent_state_at's dict: decision, applies_to, decided_at, channel, receipt_id, ...
    default: str = ""  # the institution's answer where the patient had decided nothing


@dataclass
class FlagContext:
    flag: Flag
    study: Study | None
    event: AccessEvent | None
    study_history: list[AccessEvent] = field(default_factory=list)
    accessor_history: list[AccessEvent] = field(default_factory=list)
    consent_available: bool = False
    consent_when: dt.datetime | None = None
    consent: list[ConsentRow] = field(default_factory=list)
    instances: int = 0
    instances_unverified: int = 0
    instances_failed: int = 0
    open_alerts: list[IntegrityAlert] = field(default_factory=list)
    timeline: list[FlagEvent] = field(default_factory=list)


def flag_context(flag: Flag) -> FlagContext:
    """Everything the officer's flag page shows about the patient. Call only with a flag from
    ``flag_for_officer``, inside the view's transaction that records the access."""
    event = flag.access_event
    study = flag.study or (event.study if event else None)
    ctx = FlagContext(flag=flag, study=study, event=event)
    patient: Patient = flag.patient
    if study is not None:
        ctx.study_history = list(AccessEvent.objects.filter(patient=patient, study=study).order_by("-occurred_at", "-pk")[:HISTORY_LIMIT])
        instances = Instance.objects.filter(series__study=study)
        counts = instances.aggregate(
            total=Count("pk"), unverified=Count("pk", filter=Q(verified_ok__isnull=True)), failed=Count("pk", filter=Q(verified_ok=False))
        )
        ctx.instances, ctx.instances_unverified, ctx.instances_failed = counts["total"], counts["unverified"], counts["failed"]
        ctx.open_alerts = list(IntegrityAlert.objects.filter(instance__series__study=study, resolved_at__isnull=True))
    if event is not None:
        same_actor = Q(actor_ref=event.actor_ref) if event.actor_ref else Q(actor_name=event.actor_name, organization=event.organization)
        ctx.accessor_history = list(
            AccessEvent.objects.filter(same_actor, patient=patient).exclude(pk=event.pk).select_related("study").order_by("-occurred_at", "-pk")[:HISTORY_LIMIT]
        )
    lookup = consent_state_lookup()
    if lookup is not None:
        ctx.consent_available = True
        ctx.consent_when = event.occurred_at if event else flag.created_at
        default = _consent_default()
        ctx.consent = [
            ConsentRow(scope, label, lookup(patient, scope, ctx.consent_when, study=study), default) for scope, label in CONSENT_SCOPES
        ]
    ctx.timeline = list(flag.events.select_related("actor"))
    return ctx


# --- Dashboard -------------------------------------------------------------------------------


@dataclass
class Dashboard:
    open_by_category: list[tuple[str, int]]
    open_total: int
    overdue: int
    median_days_to_close: float | None
    closed_count: int
    weeks: list[dict[str, Any]]


def dashboard(user, *, weeks: int = 12) -> Dashboard:
    """Counts for the office (no patient data): open flags by category, overdue, median time to
    close over the last year, flags opened and closed per week."""
    require_officer(user)
    now = timezone.now()
    active = Flag.objects.exclude(status__in=Flag.CLOSED)
    by_cat = dict(active.values_list("category").annotate(n=Count("pk")).values_list("category", "n"))
    open_by_category = [(label, by_cat.get(value, 0)) for value, label in Flag.Category.choices]
    year_ago = now - dt.timedelta(days=365)
    durations = [
        (closed - created).total_seconds() / 86400
        for created, closed in Flag.objects.filter(closed_at__gte=year_ago).values_list("created_at", "closed_at")
    ]
    start = (now - dt.timedelta(weeks=weeks - 1)).date()
    start = start - dt.timedelta(days=start.weekday())  # Monday
    series = []
    for i in range(weeks):
        week_start = timezone.make_aware(dt.datetime.combine(start + dt.timedelta(weeks=i), dt.time()))
        week_end = week_start + dt.timedelta(weeks=1)
        series.append(
            {
                "start": week_start.date(),
                "opened": Flag.objects.filter(created_at__gte=week_start, created_at__lt=week_end).count(),
                "closed": Flag.objects.filter(closed_at__gte=week_start, closed_at__lt=week_end).count(),
            }
        )
    return Dashboard(
        open_by_category=open_by_category,
        open_total=sum(by_cat.values()),
        overdue=active.filter(due_at__lt=now).count(),
        median_days_to_close=round(statistics.median(durations), 1) if durations else None,
        closed_count=len(durations),
        weeks=series,
    )

"""Reads for flags, for an actor (STYLE.md "Logic and data").

Every function takes the ``actor`` and starts from ``for_actor(actor)`` (``core.querysets``):

- Patients: their own reports, notices, and the study or access-log entry they are reporting;
  anything else is ``Http404``, the same as a missing id.
- Officers: ``Flag.objects.for_actor`` gives them every flag, but the queue and dashboard show
  none of a patient's data (ids, categories, dates, statuses). The patient's data behind a flag is
  read only by ``flag_context`` with the officer narrowed to that flag's patient
  (``actor.investigating(flag.patient_id)``), from ``services.flag_office_open``, which records
  the look (privacy investigation) for the patient to see.

None of these write anything; the audited reads are services (``flags.services``).
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent
from audit.selectors import event_get, event_list
from consent import selectors as consent_selectors
from core.actor import Actor
from flags.models import Flag, FlagEvent
from imaging.models import Instance, IntegrityAlert, Study
from imaging.selectors import study_get
from notices import selectors as notices_selectors
from notices.models import Notice

# Rows of access history shown on the officer's flag page: enough for an investigation, bounded
# so a patient with years of history does not make the page slow.
HISTORY_LIMIT = 100
CONSENT_SCOPES = (
    ("ai_training", "AI training"),
    ("research", "Research"),
    ("commercial", "Commercial licensing"),
    ("teaching", "Teaching"),
)


def require_officer(actor: Actor) -> None:
    """Officer pages answer 404 to everyone else: a patient learns nothing about them."""
    if not actor.is_officer:
        raise Http404("No such page.")


# --- Patient side --------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagTarget:
    """What a patient is reporting: one of their studies, or one entry of their access log."""

    study: Study | None = None
    event: AccessEvent | None = None

    @property
    def patient(self):
        return self.study.patient if self.study is not None else self.event.patient

    @property
    def shown_study(self) -> Study | None:
        """The study the report page shows: the flagged one, or the one the access touched."""
        return self.study if self.study is not None else self.event.study


def flag_target_get(*, actor: Actor, study_id: int | None = None, access_event_id: int | None = None) -> FlagTarget:
    """The study or access-log entry a patient is reporting (the entry wins when both are given,
    as on the report page); ``Http404`` outside the actor's reach. Records nothing."""
    if access_event_id is not None:
        return FlagTarget(event=event_get(actor=actor, event_id=access_event_id))
    if study_id is not None:
        return FlagTarget(study=study_get(actor=actor, study_id=study_id))
    raise Http404("Nothing to report.")


def flag_list(*, actor: Actor) -> QuerySet[Flag]:
    """The reports the patient raised, newest first. Flags the integrity check raised are the
    office's own work and are not listed; officers (who reach every flag in the queue) have no
    reports of their own here."""
    if actor.patient_id is None:
        return Flag.objects.none()
    return (
        Flag.objects.for_actor(actor)
        .filter(patient_id=actor.patient_id, integrity_alert__isnull=True)
        .select_related("study", "access_event")
        .order_by("-created_at", "-pk")
    )


def flag_get(*, actor: Actor, flag_id: int) -> Flag:
    """One of the patient's own reports; ``Http404`` otherwise, the same as a missing one."""
    flag = flag_list(actor=actor).filter(pk=flag_id).select_related("patient").first()
    if flag is None:
        raise Http404("No such report.")
    return flag


def patient_timeline(flag: Flag) -> list[FlagEvent]:
    """What the patient sees of the timeline: everything but the office's internal working."""
    return [e for e in flag.events.all() if e.visible_to_patient]


def notice_list(*, actor: Actor, limit: int = 20) -> list[Notice]:
    """The patient's newest messages from the privacy office (report updates, incident notices),
    from their notification centre (``notices``)."""
    return notices_selectors.notice_list(actor=actor, kinds=Notice.REPORT_KINDS, limit=limit)


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


def flag_queue(*, actor: Actor, filters: QueueFilters) -> QuerySet[Flag]:
    """The privacy office's queue (every flag, metadata only; the template shows no patient data)."""
    require_officer(actor)
    qs = Flag.objects.for_actor(actor).select_related("assignee")
    if filters.status == "active":
        qs = qs.exclude(status__in=Flag.CLOSED)
    elif filters.status in Flag.Status.values:
        qs = qs.filter(status=filters.status)
    if filters.category in Flag.Category.values:
        qs = qs.filter(category=filters.category)
    if filters.assignee == "me":
        qs = qs.filter(assignee_id=actor.user_id)
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


def officer_list() -> QuerySet[User]:
    """The active privacy officers, for "assign to" and the queue's "held by" filter: account
    data only (who may hold a flag), no patient's."""
    return User.objects.filter(role=User.Role.PRIVACY_OFFICER, is_active=True).order_by("email")


def flag_office_get(*, actor: Actor, flag_id: int) -> Flag:
    """A flag the officer holds (claimed or assigned), with its patient; ``Http404`` otherwise,
    the same as a missing flag (docs/security.md §9). The patient's records behind it are read
    only through ``flag_context`` with the officer narrowed to this flag."""
    require_officer(actor)
    flag = (
        Flag.objects.for_actor(actor)
        .filter(pk=flag_id, assignee_id=actor.user_id)
        .select_related("patient", "study", "access_event", "access_event__study", "integrity_alert", "assignee")
        .first()
    )
    if flag is None:
        raise Http404("No such flag.")
    return flag


def flag_queue_get(*, actor: Actor, flag_id: int) -> Flag:
    """Any flag in the queue, for claiming or assigning: the officer sees only its metadata until
    they hold it."""
    require_officer(actor)
    flag = Flag.objects.for_actor(actor).filter(pk=flag_id).first()
    if flag is None:
        raise Http404("No such flag.")
    return flag


def flag_subject_study(flag: Flag) -> Study | None:
    """The study a flag is about: its own, or the one its access event touched."""
    if flag.study_id:
        return flag.study
    return flag.access_event.study if flag.access_event_id else None


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
    consent_when: dt.datetime | None = None
    consent: list[ConsentRow] = field(default_factory=list)
    instances: int = 0
    instances_unverified: int = 0
    instances_failed: int = 0
    open_alerts: list[IntegrityAlert] = field(default_factory=list)
    timeline: list[FlagEvent] = field(default_factory=list)


def flag_context(*, actor: Actor, flag: Flag) -> FlagContext:
    """Everything the officer's flag page shows about the patient: the flagged access and the
    accessor's other accesses, the study with its integrity and access history, the patient's
    consent as it stood then, and the flag's full timeline.

    ``actor`` is the officer narrowed to the flag's patient (``actor.investigating(
    flag.patient_id)``); every read goes through that actor, so nothing of another patient can
    appear. Callers: ``services.flag_office_open`` (which records the look) with a flag from
    ``flag_office_get``. Records nothing itself.
    """
    if not actor.may_reach(flag.patient_id):
        raise Http404("No such flag.")
    events = event_list(actor=actor)
    event = event_get(actor=actor, event_id=flag.access_event_id) if flag.access_event_id else None
    study_id = flag.study_id or (event.study_id if event else None)
    study = study_get(actor=actor, study_id=study_id) if study_id else None
    ctx = FlagContext(flag=flag, study=study, event=event)
    if study is not None:
        ctx.study_history = list(events.filter(study=study)[:HISTORY_LIMIT])
        counts = Instance.objects.for_actor(actor).filter(series__study=study).aggregate(
            total=Count("pk"), unverified=Count("pk", filter=Q(verified_ok__isnull=True)), failed=Count("pk", filter=Q(verified_ok=False))
        )
        ctx.instances, ctx.instances_unverified, ctx.instances_failed = counts["total"], counts["unverified"], counts["failed"]
        ctx.open_alerts = list(IntegrityAlert.objects.for_actor(actor).filter(instance__series__study=study, resolved_at__isnull=True))
    if event is not None:
        same_actor = Q(actor_ref=event.actor_ref) if event.actor_ref else Q(actor_name=event.actor_name, organization=event.organization)
        ctx.accessor_history = list(
            events.filter(same_actor).exclude(pk=event.pk)[:HISTORY_LIMIT]
        )
    ctx.consent_when = event.occurred_at if event else flag.created_at
    default = str(consent_selectors.default_decision())
    ctx.consent = [
        ConsentRow(scope, label, consent_selectors.consent_state_at(flag.patient, scope, ctx.consent_when, study=study), default)
        for scope, label in CONSENT_SCOPES
    ]
    ctx.timeline = list(FlagEvent.objects.for_actor(actor).filter(flag=flag).select_related("actor"))
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


def dashboard(*, actor: Actor, weeks: int = 12) -> Dashboard:
    """Counts for the office (no patient data): open flags by category, overdue, median time to
    close over the last year, flags opened and closed per week."""
    require_officer(actor)
    flags = Flag.objects.for_actor(actor)
    now = timezone.now()
    active = flags.exclude(status__in=Flag.CLOSED)
    by_cat = dict(active.values_list("category").annotate(n=Count("pk")).values_list("category", "n"))
    open_by_category = [(label, by_cat.get(value, 0)) for value, label in Flag.Category.choices]
    year_ago = now - dt.timedelta(days=365)
    durations = [
        (closed - created).total_seconds() / 86400
        for created, closed in flags.filter(closed_at__gte=year_ago).values_list("created_at", "closed_at")
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
                "opened": flags.filter(created_at__gte=week_start, created_at__lt=week_end).count(),
                "closed": flags.filter(closed_at__gte=week_start, closed_at__lt=week_end).count(),
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

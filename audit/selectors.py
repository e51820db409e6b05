"""Reads of the access log for an actor (STYLE.md "Logic and data").

Every function takes the ``actor`` and starts from ``AccessEvent.objects.for_actor(actor)`` (or
``MonthlyAccessCount``'s): a patient reaches their own events, an officer only the records of the
flag they opened (``Actor.investigating``), anyone else nothing; another patient's event is a 404
like a missing one (docs/security.md §9). Nothing here records an access: the audited reads in
``audit.reads`` call these and record the visit or download in the same transaction.

The log page is built to cost the same at 1,000 events as at 1,000,000: rows come by keyset
pagination on (occurred_at, id) over the ``accessevent_patient_time_id`` index, "first access by
this organisation" badges are one index probe per organisation on the page, and the summary and
timeline read ``MonthlyAccessCount`` rather than counting the history.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncMonth
from django.http import Http404
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from audit.models import AccessEvent, MonthlyAccessCount
from core.actor import Actor
from imaging.models import Study

# Rows per page: one screen on a laptop, and a bounded query.
PAGE_SIZE = 25
# "New since your last visit" is counted up to here; beyond it the page says "over 1,000".
NEW_COUNT_CAP = 1000
AI_RESEARCH_ACTORS = (AccessEvent.ActorType.AI_VENDOR, AccessEvent.ActorType.RESEARCHER)
AI_RESEARCH_PURPOSES = (
    AccessEvent.Purpose.RESEARCH,
    AccessEvent.Purpose.AI_TRAINING,
    AccessEvent.Purpose.AI_INFERENCE,
)
# The detail the log view records about itself; the latest such event is "your last visit".
LOG_PAGE = "access_log"


def _own_q(reader: Actor) -> Q:
    """The reader's own actions: a patient's, or those of the person reading under a proxy grant
    (recorded under their name, ``actor_ref`` their account)."""
    if reader.is_proxy:
        return Q(actor_type=AccessEvent.ActorType.PROXY, actor_ref=reader.ref)
    return Q(actor_type=AccessEvent.ActorType.PATIENT)


def _not_others_q(reader: Actor) -> Q:
    """What "accesses by others" leaves out: the patient's own actions (their page views flooded
    the list, issue 19) and, to a proxy, the proxy's own as well. Another proxy's looks are
    others' to everyone."""
    patient = Q(actor_type=AccessEvent.ActorType.PATIENT)
    return patient | _own_q(reader) if reader.is_proxy else patient


def _is_others(event: AccessEvent, reader: Actor | None) -> bool:
    return event.actor_type != AccessEvent.ActorType.PATIENT and not _is_readers_own(event, reader)


def is_ai_or_research(event: AccessEvent) -> bool:
    return event.actor_type in AI_RESEARCH_ACTORS or event.purpose in AI_RESEARCH_PURPOSES


def event_list(
    *,
    actor: Actor,
    purposes: Iterable[str] | None = None,
    organization: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[AccessEvent]:
    """The access events ``actor`` may reach, newest first, optionally narrowed.

    ``purposes``: only these purposes; ``organization``: exact organisation name; ``since`` /
    ``until``: occurred_at >= since and < until. A patient gets their own events; an officer who
    is not investigating, an administrator or an anonymous request gets none. Callers: the
    access-log reads and other apps showing the patient their own history (consent: "uses made
    before you opted out", the partners page). Records nothing: the caller's service records
    the access it shows.
    """
    # for_actor gives a patient (or an officer on one flag) a plain ``patient_id = n``: PostgreSQL
    # then walks the (patient, occurred_at, id) index and stops after one page (core.querysets).
    events = AccessEvent.objects.for_actor(actor)
    if purposes is not None:
        events = events.filter(purpose__in=list(purposes))
    if organization:
        events = events.filter(organization=organization)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    return events.select_related("study").order_by("-occurred_at", "-pk")


def event_get(*, actor: Actor, event_id: int) -> AccessEvent:
    """One event ``actor`` may reach; ``Http404`` for a missing event or another patient's."""
    event = AccessEvent.objects.for_actor(actor).filter(pk=event_id).select_related("study").first()
    if event is None:
        raise Http404("No such access event.")
    return event


# --- Filters and keyset pagination -----------------------------------------------------------

SHOW_OWN = "own"
SHOW_ALL = "all"


@dataclass(frozen=True)
class LogFilters:
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive: the whole day
    organization: str = ""
    actor_type: str = ""
    purpose: str = ""
    action: str = ""
    # An id from the filter form, whose choices are the patient's own studies; the events are
    # narrowed by it after for_actor, so an id of another patient's study finds nothing.
    study_id: int | None = None
    # Whose actions: "" others' accesses (the default, issue 19: the patient's own page views
    # flooded the list), SHOW_OWN the patient's own actions, one line per day, SHOW_ALL both.
    show: str = ""

    @property
    def active(self) -> bool:
        """Whether any filter narrows the log (recorded with a download)."""
        return self != LogFilters()


def filtered_events(*, actor: Actor, filters: LogFilters) -> QuerySet[AccessEvent]:
    """The events ``actor`` may reach, narrowed by the access-log filters, newest first."""
    tz = timezone.get_current_timezone()
    since = dt.datetime.combine(filters.since, dt.time.min, tz) if filters.since else None
    until = dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time.min, tz) if filters.until else None
    events = event_list(actor=actor, organization=filters.organization or None, since=since, until=until)
    if filters.actor_type:
        events = events.filter(actor_type=filters.actor_type)
    elif filters.show == SHOW_OWN:
        events = events.filter(_own_q(actor))
    elif filters.show != SHOW_ALL:
        # Others' accesses: the (patient, -occurred_at, -id) index, the reader's own rows skipped.
        events = events.exclude(_not_others_q(actor))
    if filters.purpose:
        events = events.filter(purpose=filters.purpose)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.study_id is not None:
        events = events.filter(study_id=filters.study_id)
    return events


def encode_cursor(event: AccessEvent) -> str:
    """An opaque-looking but plain position: microseconds since the epoch and the row id."""
    micros = int(event.occurred_at.timestamp() * 1_000_000)
    return f"{micros}.{event.pk}"


def decode_cursor(value: str) -> tuple[dt.datetime, int] | None:
    """The (occurred_at, id) of a cursor, or None when it is not one of ours."""
    micros, _sep, pk = (value or "").partition(".")
    if not (micros.lstrip("-").isdigit() and pk.isdigit()) or len(micros) > 20 or len(pk) > 20:
        return None
    try:
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros))
    except OverflowError:
        return None
    return when, int(pk)


@dataclass
class LogPage:
    events: list[AccessEvent]
    next_cursor: str | None  # older events
    is_first: bool


def log_page(events: QuerySet[AccessEvent], *, before: str = "", size: int = PAGE_SIZE) -> LogPage:
    """One page of ``events`` (newest first) older than the cursor ``before``.

    Keyset pagination: the bound ``occurred_at <= t`` lets PostgreSQL start the index scan at
    the cursor, and the OR breaks ties on id, so the page costs the same however deep it is."""
    position = decode_cursor(before) if before else None
    if position is not None:
        when, pk = position
        events = events.filter(Q(occurred_at__lt=when) | Q(occurred_at=when, pk__lt=pk), occurred_at__lte=when)
    rows = list(events.order_by("-occurred_at", "-pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return LogPage(rows, encode_cursor(rows[-1]) if more and rows else None, position is None)


def first_access_ids(*, actor: Actor, events: list[AccessEvent]) -> set[int]:
    """Ids among ``events`` that are their organisation's first access to that event's patient.

    One index probe (``accessevent_patient_org``) per (patient, organisation) on the page, all in
    one statement (a UNION ALL of LIMIT 1 probes) where the database allows it (PostgreSQL); one
    query per probe on SQLite, which refuses LIMIT inside a compound statement."""
    probes = [
        AccessEvent.objects.for_actor(actor)
        .filter(patient_id=patient_id, organization=organization)
        .order_by("occurred_at", "pk")
        .values_list("pk", flat=True)[:1]
        for patient_id, organization in sorted({(e.patient_id, e.organization) for e in events if e.organization})
    ]
    if len(probes) > 1 and connections[AccessEvent.objects.db].features.supports_slicing_ordering_in_compound:
        return set(probes[0].union(*probes[1:], all=True))
    return {pk for probe in probes for pk in probe}


@dataclass
class OwnDay:
    """One line of "Your own actions": a day in the patient's time zone and what they did."""

    day: dt.date
    counts: list[tuple[str, int]]  # (action label, how many times), most frequent first
    total: int


@dataclass
class OwnPage:
    days: list[OwnDay]
    month: dt.date | None  # the first day of the month shown (patient's zone), None: nothing
    next_cursor: str | None  # an earlier month with actions: its "before" value
    is_first: bool


def own_days(events: QuerySet[AccessEvent], *, before: str = "") -> OwnPage:
    """The patient's own actions (``events``, already narrowed to them) one line per day, a
    calendar month per page, newest first, in the current time zone.

    ``before``: an ISO date, the first day of the month shown last; the page is the month of the
    newest action before it. Three queries, each bounded by one month of the patient's own
    actions on the (patient, actor_type, -occurred_at) index: the newest action before the
    cursor, that month's actions counted per day and action, and whether anything is older."""
    tz = timezone.get_current_timezone()
    bound = None
    try:
        if before:
            bound = dt.datetime.combine(dt.date.fromisoformat(before[:10]), dt.time.min, tz)
    except ValueError:
        bound = None
    events = events.order_by()
    if bound is not None:
        events = events.filter(occurred_at__lt=bound)
    newest = events.order_by("-occurred_at", "-pk").values_list("occurred_at", flat=True).first()
    if newest is None:
        return OwnPage([], None, None, bound is None)
    month = timezone.localtime(newest, tz).date().replace(day=1)
    start = dt.datetime.combine(month, dt.time.min, tz)
    rows = (
        events.filter(occurred_at__gte=start)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day", "action")
        .annotate(n=Count("pk"))
        .order_by("-day")
    )
    labels = dict(AccessEvent.Action.choices)
    per_day: dict[dt.date, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        per_day[row["day"]].append((str(labels.get(row["action"], row["action"])), row["n"]))
    days = [
        OwnDay(day, sorted(counts, key=lambda c: (-c[1], c[0])), sum(n for _label, n in counts))
        for day, counts in sorted(per_day.items(), reverse=True)
    ]
    # Ordered like the index, not .exists(): an unordered LIMIT 1 let PostgreSQL bet on a
    # sequential scan of the whole table finding a row early.
    older = events.filter(occurred_at__lt=start).order_by("-occurred_at", "-pk").values_list("pk", flat=True).first()
    return OwnPage(days, month, month.isoformat() if older is not None else None, bound is None)


# --- Plain language ------------------------------------------------------------------------


def _purpose_phrase(purpose: str) -> str:
    return {
        AccessEvent.Purpose.TREATMENT: _("for your care"),
        AccessEvent.Purpose.PAYMENT: _("for billing"),
        AccessEvent.Purpose.OPERATIONS: _("for hospital operations"),
        AccessEvent.Purpose.RESEARCH: _("for research"),
        AccessEvent.Purpose.AI_TRAINING: _("to train an AI system"),
        AccessEvent.Purpose.AI_INFERENCE: _("for analysis by an AI system"),
        AccessEvent.Purpose.PATIENT_REQUEST: _("at your request"),
        AccessEvent.Purpose.PRIVACY_INVESTIGATION: _("for a privacy investigation"),
        AccessEvent.Purpose.EMERGENCY: _("for emergency care"),
        AccessEvent.Purpose.LEGAL: _("because the law requires it"),
    }.get(purpose, purpose)


def _what(event: AccessEvent, whose: str | None = None) -> str:
    """What was touched, as "your CT chest", or with ``whose`` ("their", "Sam Doe's") in place of "your"."""
    if (event.details or {}).get("page") == LOG_PAGE:
        what = _("access log")
    elif event.study is not None:
        # In plain case, as the imaging pages show it ("CT chest with contrast", issue 19 item 9).
        # Imported here: imaging.dicom loads pydicom's pixel stack, which an export worker, which
        # imports this module, must never load (tests/exports/test_worker.py).
        from imaging.dicom.terms import plain_description

        what = plain_description(event.study.description) or _("imaging study")
    else:
        what = _("imaging records")
    return _("%(whose)s %(what)s") % {"whose": whose or _("your"), "what": what}


def _is_readers_own(event: AccessEvent, reader: Actor | None) -> bool:
    """Whether ``reader`` did this: a patient's own actions, or, to someone acting for the patient
    under a proxy grant, their own (the patient's are then the patient's, not "yours")."""
    if reader is not None and reader.is_proxy:
        return event.actor_type == AccessEvent.ActorType.PROXY and event.actor_ref == reader.ref
    return event.actor_type == AccessEvent.ActorType.PATIENT


def describe(event: AccessEvent, *, reader: Actor | None = None, patient_name: str = "") -> str:
    """One sentence for the patient: "Dr Jane Roe, Radiologist at Mercy Hospital, viewed your
    CT chest for your care." (the time is shown next to it). To a ``reader`` acting for the
    patient (a proxy), "You" is the proxy: "You viewed Sam Doe's CT chest." and the patient's own
    actions are "Sam Doe viewed their CT chest." (``patient_name``)."""
    verb = event.get_action_display().lower()
    proxy_reader = reader is not None and reader.is_proxy
    name = patient_name or _("The patient")
    if proxy_reader and _is_readers_own(event, reader):
        return _("You %(verb)s %(what)s.") % {"verb": verb, "what": _what(event, _("%(name)s's") % {"name": name})}
    if event.actor_type == AccessEvent.ActorType.PATIENT:
        if proxy_reader:
            return _("%(name)s %(verb)s %(what)s.") % {"name": name, "verb": verb, "what": _what(event, _("their"))}
        return _("You %(verb)s %(what)s.") % {"verb": verb, "what": _what(event)}
    who = event.actor_name or event.get_actor_type_display()
    # A sender that knows only the role names the person by it: "Referring physician at Mercy
    # Hospital", not "Referring physician, Referring physician at Mercy Hospital".
    role = "" if event.role.casefold() == who.casefold() else event.role
    if role and event.organization:
        who = _("%(who)s, %(role)s at %(org)s") % {"who": who, "role": role, "org": event.organization}
    elif event.organization:
        who = _("%(who)s at %(org)s") % {"who": who, "org": event.organization}
    elif role:
        who = f"{who}, {role}"
    sentence = _("%(who)s %(verb)s %(what)s %(why)s.") % {
        "who": who, "verb": verb, "what": _what(event), "why": _purpose_phrase(event.purpose)
    }
    if (event.details or {}).get("via") == "share":  # a share link's recipient (sharing.links)
        sentence = sentence[:-1] + " " + _("— through a link you shared.")
    if event.outcome == AccessEvent.Outcome.DENIED:
        sentence += " " + _("The request was refused.")
    elif event.outcome == AccessEvent.Outcome.FAILURE:
        sentence += " " + _("It did not succeed.")
    return sentence


@dataclass
class LogRow:
    """One row of the log page, with everything the template shows already worked out: the
    template loop only places strings (per-row filters and display lookups were most of the
    page's render time, issue 18)."""

    event: AccessEvent
    sentence: str
    badges: list[tuple[str, str]] = field(default_factory=list)  # (css modifier, label)
    when_iso: str = ""  # the time in the current time zone, ISO 8601, for <time datetime>
    when_text: str = ""  # "4 Dec 2026, 15:18 GMT" (DATETIME_FORMAT)
    meta: str = ""  # "Clinician · Treatment · Connected system"
    flaggable: bool = False  # someone else's access, which the patient may flag


def log_rows(*, actor: Actor, events: list[AccessEvent], last_visit: dt.datetime | None,
             patient_name: str = "") -> list[LogRow]:
    """The page's rows: one plain sentence and its badges per event (``describe``; "You" is the
    reader, a proxy included)."""
    firsts = first_access_ids(actor=actor, events=events)
    rows = []
    for event in events:
        badges = []
        if last_visit is not None and event.occurred_at > last_visit and _is_others(event, actor):
            badges.append(("new", _("New")))
        if event.pk in firsts:
            badges.append(("first", _("First access by this organisation")))
        if event.actor_type == AccessEvent.ActorType.AI_VENDOR or event.purpose in (
            AccessEvent.Purpose.AI_TRAINING, AccessEvent.Purpose.AI_INFERENCE
        ):
            badges.append(("ai", _("AI use")))
        elif event.actor_type == AccessEvent.ActorType.RESEARCHER or event.purpose == AccessEvent.Purpose.RESEARCH:
            badges.append(("research", _("Research use")))
        if event.purpose == AccessEvent.Purpose.EMERGENCY:
            badges.append(("emergency", _("Emergency access")))
        if _is_readers_own(event, actor):
            badges.append(("self", _("You")))
        when = timezone.localtime(event.occurred_at)
        rows.append(
            LogRow(
                event, describe(event, reader=actor, patient_name=patient_name), badges, when_iso=when.isoformat(), when_text=date_format(when, "DATETIME_FORMAT"),
                meta=" · ".join(
                    (event.get_actor_type_display(), event.get_purpose_display(), event.get_source_display())
                ),
                flaggable=_is_others(event, actor),
            )
        )
    return rows


# --- Summary and timeline --------------------------------------------------------------------


def last_visit(*, actor: Actor, before: AccessEvent | None = None) -> dt.datetime | None:
    """When the reader (the patient, or a proxy: their own visits) last opened the access log
    (before the visit ``before``), or None."""
    visits = (
        AccessEvent.objects.for_actor(actor)
        .filter(_own_q(actor), details__page=LOG_PAGE)
        .order_by("-occurred_at", "-pk")
    )
    if before is not None:
        visits = visits.exclude(pk=before.pk)
    return visits.values_list("occurred_at", flat=True).first()


def _months_back(today: dt.date, n: int) -> list[dt.date]:
    months, year, month = [], today.year, today.month
    for _i in range(n):
        months.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return list(reversed(months))


@dataclass
class LogSummary:
    total_12m: int  # accesses by others (the patient's own actions are own_12m)
    own_12m: int
    organizations_12m: int
    ai_vendor_12m: int
    research_12m: int
    new_since_visit: int
    new_capped: bool
    last_visit: dt.datetime | None
    months: list[dt.date]
    # {actor_type: [count per month]}, only types with any count
    series: dict[str, list[int]]


def log_summary(*, actor: Actor, last_visit_at: dt.datetime | None) -> LogSummary:
    """The 12-month summary and monthly timeline of the log ``actor`` may reach, from the
    monthly counts (no history scan): accesses by others, with the reader's own total apart.
    The counts know actor types, not people: to a proxy, their own actions are counted from the
    log (one index range, bounded by their own actions) and taken out of the proxies' figures,
    and the patient's own are in neither figure (``_not_others_q``)."""
    months = _months_back(timezone.now().astimezone(dt.UTC).date(), 12)
    counts = MonthlyAccessCount.objects.for_actor(actor).filter(month__gte=months[0])
    per_month: dict[str, list[int]] = defaultdict(lambda: [0] * len(months))
    index = {m: i for i, m in enumerate(months)}
    organizations: set[str] = set()
    total = own = ai = research = 0
    for row in counts.values("month", "actor_type", "organization", "purpose").annotate(n=Sum("count")):
        n = row["n"]
        if row["actor_type"] == AccessEvent.ActorType.PATIENT:
            # The patient's own actions are counted beside the others', never in the headline
            # or the chart: one visit of theirs added dozens of rows (issue 19).
            own += 0 if actor.is_proxy else n
            continue
        total += n
        if row["month"] in index:
            per_month[row["actor_type"]][index[row["month"]]] += n
        if row["organization"] and row["actor_type"] != AccessEvent.ActorType.PATIENT:
            organizations.add(row["organization"])
        if row["actor_type"] == AccessEvent.ActorType.AI_VENDOR or row["purpose"] in (
            AccessEvent.Purpose.AI_TRAINING, AccessEvent.Purpose.AI_INFERENCE
        ):
            ai += n
        elif row["actor_type"] == AccessEvent.ActorType.RESEARCHER or row["purpose"] == AccessEvent.Purpose.RESEARCH:
            research += n
    if actor.is_proxy:
        mine = (
            AccessEvent.objects.for_actor(actor)
            .filter(_own_q(actor), occurred_at__gte=dt.datetime.combine(months[0], dt.time.min, dt.UTC))
            .annotate(month=TruncMonth("occurred_at", tzinfo=dt.UTC))
            .values("month")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in mine:
            own += row["n"]
            total -= row["n"]
            month = row["month"].date()
            if month in index:  # not a month ahead of this server's clock
                per_month[AccessEvent.ActorType.PROXY][index[month]] -= row["n"]
    new = 0
    if last_visit_at is not None:
        recent = AccessEvent.objects.for_actor(actor).filter(occurred_at__gt=last_visit_at).exclude(
            _not_others_q(actor)
        )
        new = recent.order_by()[: NEW_COUNT_CAP + 1].count()
    order = [t for t in AccessEvent.ActorType.values if any(per_month.get(t, ()))]
    return LogSummary(
        total_12m=total,
        own_12m=own,
        organizations_12m=len(organizations),
        ai_vendor_12m=ai,
        research_12m=research,
        new_since_visit=min(new, NEW_COUNT_CAP),
        new_capped=new > NEW_COUNT_CAP,
        last_visit=last_visit_at,
        months=months,
        series={t: per_month[t] for t in order},
    )


def filter_choices(*, actor: Actor) -> dict[str, list[tuple[str, str]]]:
    """Organisations in the log ``actor`` may reach and the studies it may reach, for the filter
    form's select boxes (so a crafted value for anything else is "not a valid choice")."""
    organizations = (
        MonthlyAccessCount.objects.for_actor(actor).exclude(organization="")
        .order_by("organization").values_list("organization", flat=True).distinct()
    )
    studies = Study.objects.for_actor(actor).order_by("-study_date", "-pk")
    return {
        "organization": [(o, o) for o in organizations],
        "study": [
            (str(s.pk), f"{s.description or _('Imaging study')}" + (f" ({date_format(s.study_date, 'DATE_FORMAT')})" if s.study_date else ""))
            for s in studies
        ],
    }

"""Writes for flags, the privacy office's work on them, incident notices and patient notices,
and the audited reads of flag pages.

Every service takes the ``actor`` (``core.actor``), keyword-only, and reaches flags through
``Flag.objects.for_actor(actor)`` (a patient: their own; an officer: every flag, for the queue).
Who may call what:

- ``flag_target_open``, ``flag_create``, ``flag_list_open``, ``flag_open``, ``flag_reply``,
  ``notices_mark_read``: the patient, for their own records.
- ``flag_office_open``, ``flag_claim``, ``flag_assign``, ``flag_note``, ``flag_message``,
  ``flag_transition``, ``flag_integrity_recheck``, ``incident_confirm``: a privacy officer; each
  re-checks the officer and (except claim and assign) that they hold the flag. An officer reaches
  the flag's patient records only as ``actor.investigating(flag.patient_id)``.
- ``flags_from_integrity_alerts``: the periodic task, as ``Actor.system``.

Status changes follow ``TRANSITIONS``; anything else raises ``ValidationError``. Every change the
patient can see writes a ``notices.Notice`` (the patient's notification centre; report updates and
incident notices also show on "My reports") and, after commit, an email with no clinical detail. A
study's "under review" status belongs to imaging and is set through
``imaging.services.integrity.study_status_set``.

Audit (docs/security.md §13): every page that shows a patient's data records one access event
through ``core.access_log.record`` in the same transaction as the read: the report form
(view, or modify when a report is sent), "My reports", a report's page, a reply (modify); the
officer's flag page (view, once per officer, flag, study and day) and integrity re-check
(query), both purpose privacy investigation under the officer's name. A read that ends in
``Http404`` records nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from audit.models import AccessEvent
from core import access_log
from core.actor import Actor
from core.links import site_url
from flags import selectors
from flags.models import Flag, FlagEvent, Incident
from imaging.models import IntegrityAlert, Patient, Study
from imaging.selectors import patient_get, study_get
from imaging.services.integrity import integrity_alert_resolve, study_status_set
from notices.models import Notice
from notices.services import notice_add, notices_add, notices_mark_all_read

S = Flag.Status

# The state machine, as a table: status -> the statuses it may move to. Closed is final: a
# patient who disagrees with an outcome raises a new flag, so every outcome stays on record.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.OPEN: frozenset({S.IN_REVIEW, S.DISMISSED}),
    S.IN_REVIEW: frozenset({S.NEEDS_INFO, S.RESOLVED, S.DISMISSED}),
    S.NEEDS_INFO: frozenset({S.IN_REVIEW, S.RESOLVED, S.DISMISSED}),
    S.RESOLVED: frozenset(),
    S.DISMISSED: frozenset(),
}

# Which categories fit which target: a study can be "not mine" or "altered"; an access-log entry
# can be an unknown accessor or an unwanted use.
STUDY_CATEGORIES = (
    Flag.Category.NOT_MY_SCAN,
    Flag.Category.WRONG_DETAILS,
    Flag.Category.SUSPECTED_TAMPERING,
    Flag.Category.OTHER,
)
EVENT_CATEGORIES = (
    Flag.Category.UNFAMILIAR_ACCESSOR,
    Flag.Category.UNEXPECTED_AI_OR_RESEARCH_USE,
    Flag.Category.OTHER,
)


def deadline_days() -> int:
    return int(getattr(settings, "FLAGS_DEADLINE_DAYS", 30))


def _require_officer(actor: Actor) -> None:
    if not actor.is_officer:
        raise PermissionDenied("Only the privacy office may do this.")


def _require_holder(actor: Actor, flag: Flag) -> None:
    _require_officer(actor)
    if flag.assignee_id is None or flag.assignee_id != actor.user_id:
        raise PermissionDenied("Only the officer holding this flag may work on it.")


def _locked(actor: Actor, flag_id: int) -> Flag:
    """Re-read the flag under a row lock, through the actor's reach (``Http404`` outside it): two
    officers (or an officer and the patient) acting at once must not both move it from the same
    status."""
    flag = (
        Flag.objects.for_actor(actor)
        .select_for_update(of=("self",))
        .select_related("patient", "patient__user", "study")
        .filter(pk=flag_id)
        .first()
    )
    if flag is None:
        raise Http404("No such flag.")
    return flag


def _event(flag: Flag, kind: str, actor: Actor | None = None, *, text: str = "", from_status: str = "", to_status: str = "",
           details=None) -> FlagEvent:
    event = FlagEvent(
        flag=flag, kind=kind, actor_id=actor.user_id if actor is not None else None, text=text,
        from_status=from_status, to_status=to_status, details=details or {},
    )
    event.full_clean()
    event.save()
    return event


def _touch(flag: Flag, *fields: str) -> None:
    flag.updated_at = timezone.now()
    flag.full_clean()
    flag.save(update_fields=["updated_at", *fields])


# --- Study status ----------------------------------------------------------------------------


def _study_status_sync(*, actor: Actor, study: Study | None) -> None:
    """A study with any open flag is "under review"; when its last flag closes it is available
    again. ``actor`` is whoever changed the flag (narrowed to the patient for an officer); the
    status itself is imaging's to write (``study_status_set``)."""
    if study is None:
        return
    # Lock the study row (read only here) before counting its open flags: a flag closing and
    # another opening at once then count one after the other, and the last word is right.
    Study.objects.for_actor(actor).select_for_update().filter(pk=study.pk).exists()
    flagged = Flag.objects.filter(study_id=study.pk).exclude(status__in=Flag.CLOSED).exists()
    wanted = Study.Status.UNDER_REVIEW if flagged else Study.Status.AVAILABLE
    study_status_set(actor=actor, study=study, status=wanted)


# --- Notices ---------------------------------------------------------------------------------


def _send_emails(notice_ids: list[int]) -> None:
    """Email each notice's patient that there is news, after commit (a rolled-back change sends
    nothing). Flag updates say only that there is an update; the text stays in the portal."""
    notices = Notice.objects.filter(pk__in=notice_ids).select_related("patient__user")
    url = site_url(reverse("flags-mine"))
    messages = []
    for notice in notices:
        user = notice.patient.user
        if user is None or not user.email:
            continue  # no account yet: the notice waits in the portal
        context = {
            "notice": notice,
            "site_name": settings.SITE_NAME,
            "hospital": settings.HOSPITAL_NAME,
            "url": url,
        }
        text = render_to_string("flags/email/notice.txt", context)
        message = EmailMultiAlternatives(
            subject=f"[{settings.SITE_NAME}] {notice.subject}", body=text, to=[user.email]
        )
        messages.append(message)
    if messages:
        get_connection().send_messages(messages)


def _notify_flag(flag: Flag, body: str, *, email: bool = True) -> None:
    """The patient's notice of news on their report, and (``email``) an email saying so."""
    if flag.from_integrity_check:
        return  # raised by the system, not the patient: nothing of theirs to update
    notice = notice_add(
        patient_id=flag.patient_id, kind=Notice.Kind.REPORT_UPDATE, key=f"flag:{flag.pk}",
        subject=_("An update on your report #%(id)s") % {"id": flag.pk}, body=body,
        link=reverse("flags-detail", kwargs={"flag_id": flag.pk}),
    )
    if email and notice is not None:
        transaction.on_commit(lambda: _send_emails([notice.pk]))


@transaction.atomic
def notices_mark_read(*, actor: Actor) -> int:
    """The patient marks the messages on "My reports" (report updates, incident notices) read.
    Returns how many changed. Records nothing (no patient data is read)."""
    if actor.patient_id is None:
        raise PermissionDenied("Only the patient may mark their notices read.")
    return notices_mark_all_read(actor=actor, kinds=Notice.REPORT_KINDS)


# --- Patient pages and actions -------------------------------------------------------------------


@transaction.atomic
def flag_target_open(*, actor: Actor, study_id: int | None = None, access_event_id: int | None = None) -> selectors.FlagTarget:
    """The patient opens the report form for one of their studies or access-log entries.

    Callers: the report page (GET, and a refused POST shown again). ``Http404`` outside the
    patient's records, recording nothing. Records one access event: view, page flag_new (with
    the entry's id for an access-log entry).
    """
    target = selectors.flag_target_get(actor=actor, study_id=study_id, access_event_id=access_event_id)
    access_log.record(
        actor=actor, patient=target.patient, study=target.shown_study, action=AccessEvent.Action.VIEW,
        details={"page": "flag_new", **({"event": target.event.pk} if target.event else {})},
    )
    return target


@transaction.atomic
def flag_create(
    *, actor: Actor, category: str, description: str, study_id: int | None = None, access_event_id: int | None = None
) -> Flag:
    """The patient flags one of their studies or access-log entries (exactly one of the two).

    Callers: the report page (POST). ``Http404`` for a study or entry outside the patient's
    records. Rejects a category that does not fit the target and a second open flag on the same
    thing. Sets the study "under review"; notifies the patient; records one access event (modify,
    page flag_new, the new flag's id).
    """
    if (study_id is None) == (access_event_id is None):
        raise ValidationError("Flag either a study or an access-log entry.")
    target = selectors.flag_target_get(actor=actor, study_id=study_id, access_event_id=access_event_id)
    patient = target.patient
    if actor.patient_id is None or patient.pk != actor.patient_id:
        raise PermissionDenied("Only the patient may flag their own records.")
    allowed = STUDY_CATEGORIES if target.study is not None else EVENT_CATEGORIES
    if category not in allowed:
        raise ValidationError({"category": _("Choose one of the reasons listed.")})
    existing = Flag.objects.for_actor(actor).filter(patient=patient, study=target.study, access_event=target.event)
    if existing.exclude(status__in=Flag.CLOSED).exists():
        raise ValidationError(_("You have already reported this, and the report is still open."))
    now = timezone.now()
    flag = Flag(
        patient=patient,
        study=target.study,
        access_event=target.event,
        raised_by_id=actor.user_id,
        category=category,
        description=description.strip(),
        created_at=now,
        updated_at=now,
        due_at=now + dt.timedelta(days=deadline_days()),
    )
    flag.full_clean()
    flag.save()
    _event(flag, FlagEvent.Kind.CREATED, actor, to_status=flag.status, text=flag.description)
    _study_status_sync(actor=actor, study=target.study)
    _notify_flag(
        flag,
        _("We have received your report. The privacy office will look into it and reply by %(due)s.")
        % {"due": date_format(timezone.localtime(flag.due_at), "DATE_FORMAT")},
    )
    access_log.record(
        actor=actor, patient=patient, study=target.shown_study, action=AccessEvent.Action.MODIFY,
        details={"page": "flag_new", "flag": flag.pk},
    )
    return flag


@dataclass
class MyReports:
    patient: Patient | None
    flags: list[Flag]
    notices: list[Notice]

    @property
    def unread(self) -> int:
        return sum(1 for n in self.notices if n.read_at is None)


@transaction.atomic
def flag_list_open(*, actor: Actor) -> MyReports:
    """The patient opens "My reports": their reports and their notices.

    Callers: the "My reports" page. Records one access event (view, page flags_mine) when the
    actor has a patient record; an account without one sees an empty page and nothing is recorded.
    """
    patient = patient_get(actor=actor)
    reports = MyReports(patient=patient, flags=list(selectors.flag_list(actor=actor)), notices=selectors.notice_list(actor=actor))
    if patient is not None:
        access_log.record(actor=actor, patient=patient, action=AccessEvent.Action.VIEW, details={"page": "flags_mine"})
    return reports


@transaction.atomic
def flag_open(*, actor: Actor, flag_id: int) -> Flag:
    """The patient opens one of their reports. ``Http404`` for anyone else's (nothing recorded);
    otherwise one access event (view, page flag, the flag's id)."""
    flag = selectors.flag_get(actor=actor, flag_id=flag_id)
    access_log.record(
        actor=actor, patient=flag.patient, study=flag.study, action=AccessEvent.Action.VIEW,
        details={"page": "flag", "flag": flag.pk},
    )
    return flag


@transaction.atomic
def flag_reply(*, actor: Actor, flag: Flag, text: str) -> FlagEvent:
    """The patient answers the office's question. Only while the flag waits for them
    (needs_info); the flag goes back to in_review. Records one access event (modify, page
    flag_reply)."""
    flag = _locked(actor, flag.pk)
    if actor.patient_id is None or flag.patient_id != actor.patient_id or flag.from_integrity_check:
        raise PermissionDenied("Only the patient may reply to their report.")
    if flag.status != S.NEEDS_INFO:
        raise ValidationError(_("The privacy office is not waiting for a reply on this report."))
    text = text.strip()
    if not text:
        raise ValidationError({"text": _("Write your reply.")})
    event = _event(flag, FlagEvent.Kind.MESSAGE_FROM_PATIENT, actor, text=text)
    _set_status(flag, S.IN_REVIEW, actor)
    _notify_flag(flag, _("We have received your reply. The privacy office will continue its review."))
    access_log.record(
        actor=actor, patient=flag.patient, study=flag.study, action=AccessEvent.Action.MODIFY,
        details={"page": "flag_reply", "flag": flag.pk},
    )
    return event


# --- Office actions ------------------------------------------------------------------------


def _set_status(flag: Flag, to: str, actor: Actor, *, resolution: str = "") -> None:
    """Move ``flag`` (already locked) along the table; reject anything the table does not allow."""
    if to not in TRANSITIONS.get(flag.status, frozenset()):
        raise ValidationError(
            _("A report cannot go from “%(from)s” to “%(to)s”.")
            % {"from": Flag.Status(flag.status).label, "to": Flag.Status(to).label if to in S.values else to}
        )
    if to in Flag.CLOSED and not resolution.strip():
        raise ValidationError({"resolution": _("Write the outcome for the patient before closing the report.")})
    previous = flag.status
    flag.status = to
    fields = ["status"]
    if to in Flag.CLOSED:
        flag.closed_at = timezone.now()
        flag.resolution = resolution.strip()
        fields += ["closed_at", "resolution"]
    _touch(flag, *fields)
    _event(flag, FlagEvent.Kind.STATUS, actor, from_status=previous, to_status=to, text=flag.resolution if to in Flag.CLOSED else "")
    if to in Flag.CLOSED:
        # The study's status is the patient's record: an officer changes it only as narrowed to it.
        on_record = actor.investigating(flag.patient_id) if actor.is_officer else actor
        _study_status_sync(actor=on_record, study=flag.study)
        if flag.integrity_alert_id:
            integrity_alert_resolve(actor=on_record, alert_id=flag.integrity_alert_id)


def _day_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The calendar day ``now`` falls in, in the portal's time zone (``TIME_ZONE``, UTC unless
    set): the zone the patient's access log shows its dates in, so "one look a day" is one line
    per day as the patient reads it."""
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    # Aware arithmetic keeps the wall clock (zoneinfo): a DST day is 23 or 25 hours, as on a calendar.
    return start, start + dt.timedelta(days=1)


@transaction.atomic
def flag_office_open(*, actor: Actor, flag_id: int, now: dt.datetime | None = None) -> selectors.FlagContext:
    """The holding officer opens a flag's page: the flag and everything about the patient it
    needs (``selectors.flag_context``), read as the officer narrowed to that patient.

    ``Http404`` unless the officer holds the flag (nothing recorded). Records one access event
    per officer, flag, study shown and day (the portal's ``TIME_ZONE`` day, ``_day_bounds``):
    view, purpose privacy investigation, under the officer's name, on the flag's study (or the
    flagged access's study), details page flag and the flag's id. Reloading the page the same
    day adds nothing (six reloads in a minute were six lines in the patient's log saying the
    same thing); a look on another day, or at another study, is a new line. Race-safe: the
    flag's row is locked before the check, so two loads at once write one event between them.
    ``now`` is for tests (a fixed clock); it is also the event's time.
    """
    flag = selectors.flag_office_get(actor=actor, flag_id=flag_id)
    investigating = actor.investigating(flag.patient_id)
    ctx = selectors.flag_context(actor=investigating, flag=flag)
    now = now or timezone.now()
    start, end = _day_bounds(now)
    # The flag row serialises concurrent loads of its page (the officer actions lock it too, in
    # the same order: flag, then the patient's chain in record). Read-committed: once the lock
    # is ours, the query below sees the event a load that held it before us committed.
    Flag.objects.for_actor(actor).select_for_update(of=("self",)).filter(pk=flag.pk).exists()
    seen_today = AccessEvent.objects.for_actor(investigating).filter(
        patient_id=flag.patient_id, actor_ref=investigating.ref, action=AccessEvent.Action.VIEW,
        study=ctx.study, details__page="flag", details__flag=flag.pk, occurred_at__gte=start, occurred_at__lt=end,
    ).exists()
    if not seen_today:
        access_log.record(
            actor=investigating, patient=flag.patient, study=ctx.study, action=AccessEvent.Action.VIEW,
            occurred_at=now, details={"page": "flag", "flag": flag.pk},
        )
    return ctx


@transaction.atomic
def flag_transition(*, actor: Actor, flag: Flag, to: str, resolution: str = "") -> Flag:
    """The holding officer changes the status (per ``TRANSITIONS``); closing needs a resolution
    for the patient. The patient is notified."""
    flag = _locked(actor, flag.pk)
    _require_holder(actor, flag)
    _set_status(flag, to, actor, resolution=resolution)
    if to in Flag.CLOSED:
        body = _("Your report is closed. Sign in to read the outcome.")
    elif to == S.NEEDS_INFO:
        body = _("The privacy office needs more information from you. Sign in to reply.")
    else:
        body = _("Your report is now: %(status)s.") % {"status": Flag.Status(to).label}
    _notify_flag(flag, body)
    return flag


@transaction.atomic
def flag_claim(*, actor: Actor, flag: Flag) -> Flag:
    """An officer takes an unassigned flag; an open flag moves to in_review."""
    _require_officer(actor)
    flag = _locked(actor, flag.pk)
    if flag.assignee_id not in (None, actor.user_id):
        raise PermissionDenied("Another officer holds this flag.")
    if flag.assignee_id is None:
        flag.assignee_id = actor.user_id
        _touch(flag, "assignee")
        _event(flag, FlagEvent.Kind.CLAIMED, actor)
    if flag.status == S.OPEN:
        _set_status(flag, S.IN_REVIEW, actor)
        _notify_flag(flag, _("The privacy office has started reviewing your report."))
    return flag


@transaction.atomic
def flag_assign(*, actor: Actor, flag: Flag, assignee) -> Flag:
    """An officer hands a flag they hold (or an unassigned one) to an officer, themselves
    included. ``assignee`` is a user from ``selectors.officer_list``."""
    _require_officer(actor)
    if not getattr(assignee, "is_privacy_officer", False) or not assignee.is_active:
        raise ValidationError({"assignee": _("Choose an active privacy officer.")})
    flag = _locked(actor, flag.pk)
    if flag.assignee_id not in (None, actor.user_id):
        raise PermissionDenied("Another officer holds this flag.")
    previous = flag.assignee
    flag.assignee = assignee
    _touch(flag, "assignee")
    _event(
        flag, FlagEvent.Kind.ASSIGNED, actor,
        details={"from": previous.pk if previous else None, "to": assignee.pk},  # ids: no emails in the history
    )
    return flag


@transaction.atomic
def flag_note(*, actor: Actor, flag: Flag, text: str) -> FlagEvent:
    """An internal note; the patient never sees it and is not notified."""
    flag = _locked(actor, flag.pk)
    _require_holder(actor, flag)
    if not text.strip():
        raise ValidationError({"text": _("Write the note.")})
    event = _event(flag, FlagEvent.Kind.NOTE, actor, text=text.strip())
    _touch(flag)
    return event


@transaction.atomic
def flag_message(*, actor: Actor, flag: Flag, text: str, ask_for_info: bool = False) -> FlagEvent:
    """A message to the patient, shown on their report; ``ask_for_info`` also moves the flag to
    needs_info so they can reply. The patient is notified."""
    flag = _locked(actor, flag.pk)
    _require_holder(actor, flag)
    if flag.from_integrity_check:
        raise ValidationError(_("This flag was raised by the integrity check; there is no patient report to answer."))
    if not text.strip():
        raise ValidationError({"text": _("Write the message.")})
    event = _event(flag, FlagEvent.Kind.MESSAGE_TO_PATIENT, actor, text=text.strip())
    if ask_for_info:
        _set_status(flag, S.NEEDS_INFO, actor)
        _notify_flag(flag, _("The privacy office needs more information from you. Sign in to reply."))
    else:
        _touch(flag)
        _notify_flag(flag, _("The privacy office sent you a message about your report."))
    return event


@transaction.atomic
def flag_integrity_recheck(*, actor: Actor, flag: Flag):
    """The holding officer re-hashes the flag's study files now (``imaging.services.
    instances_verify``). A look at patient data: one access event (query, privacy
    investigation, under the officer's name)."""
    from imaging.services.integrity import instances_verify

    flag = _locked(actor, flag.pk)
    _require_holder(actor, flag)
    investigating = actor.investigating(flag.patient_id)
    subject = selectors.flag_subject_study(flag)
    if subject is None:
        raise ValidationError(_("This access-log entry is not about a particular study; there are no files to check."))
    study = study_get(actor=investigating, study_id=subject.pk)
    result = instances_verify(study=study)
    access_log.record(
        actor=investigating, patient=flag.patient, study=study, action=AccessEvent.Action.QUERY,
        details={"page": "flag", "flag": flag.pk, "integrity_recheck": True},
    )
    summary = {"checked": result.checked, "ok": result.ok, "mismatched": result.mismatched, "missing": result.missing}
    _event(flag, FlagEvent.Kind.INTEGRITY_RECHECK, actor, details=summary)
    _touch(flag)
    return result


# --- Integrity alerts into the queue -----------------------------------------------------------


@transaction.atomic
def flags_from_integrity_alerts(*, actor: Actor) -> int:
    """One ``suspected_tampering`` flag for each open IntegrityAlert that has none.

    Callers: the periodic task ``flags.flags_from_integrity_alerts`` only, as
    ``Actor.system("Integrity check")`` (imaging must not import flags, so flags pulls; the
    queue page only reads). Idempotent: alerts are locked (skipping any another run holds) and
    the one-to-one column allows one flag per alert. Records no access event: no one looks at a
    patient's data. Returns how many flags it created.
    """
    alerts = (
        IntegrityAlert.objects.for_actor(actor)
        .select_for_update(skip_locked=True, of=("self",))
        .filter(resolved_at__isnull=True, flag__isnull=True)
        .select_related("instance__series__study")
    )
    created = 0
    now = timezone.now()
    for alert in alerts:
        study = alert.instance.series.study
        flag = Flag(
            patient_id=study.patient_id,
            study=study,
            integrity_alert=alert,
            category=Flag.Category.SUSPECTED_TAMPERING,
            description=f"Integrity check: {alert.get_kind_display()} (instance {alert.instance_id}).",
            created_at=now,
            updated_at=now,
            due_at=now + dt.timedelta(days=deadline_days()),
        )
        flag.full_clean()
        flag.save()
        _event(flag, FlagEvent.Kind.CREATED, actor, to_status=flag.status, details={"integrity_alert": alert.pk, "kind": alert.kind})
        _study_status_sync(actor=actor, study=study)
        created += 1
    return created


# --- Incidents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentCriteria:
    window_start: dt.datetime
    window_end: dt.datetime
    organization: str = ""
    study: Study | None = None


def incident_patients(*, actor: Actor, criteria: IncidentCriteria):
    """The patients an incident concerns, among those ``actor`` reaches: anyone with an access
    event in the window from the organisation (case-insensitive, exact) and, if given, on the
    study. At least one of organisation or study is required, or "everyone in the window" would
    be a slip of the hand."""
    if not criteria.organization.strip() and criteria.study is None:
        raise ValidationError(_("Choose an organisation, a study, or both."))
    if criteria.window_end < criteria.window_start:
        raise ValidationError(_("The time window ends before it starts."))
    events = AccessEvent.objects.for_actor(actor).filter(occurred_at__gte=criteria.window_start, occurred_at__lte=criteria.window_end)
    if criteria.organization.strip():
        events = events.filter(organization__iexact=criteria.organization.strip())
    if criteria.study is not None:
        events = events.filter(study=criteria.study)
    return Patient.objects.for_actor(actor).filter(pk__in=events.values("patient_id")).order_by("pk")


@transaction.atomic
def incident_confirm(*, actor: Actor, flag: Flag, criteria: IncidentCriteria, subject: str, message: str) -> Incident:
    """The holding officer confirms an incident and notifies exactly the patients the criteria
    choose (portal notice + email carrying the office's message, which the form asks to keep
    free of clinical detail). The officer is not shown who they are: only the count.

    The patients are chosen by the hospital, not by the officer (who reaches no record but their
    flag's): the search runs as ``Actor.system("Incident notice")``, and nothing of theirs is
    read or shown, so no access event is recorded.
    """
    flag = _locked(actor, flag.pk)
    _require_holder(actor, flag)
    if not subject.strip() or not message.strip():
        raise ValidationError(_("Write a subject and a message for the patients."))
    patients = list(incident_patients(actor=Actor.system("Incident notice"), criteria=criteria))
    incident = Incident(
        flag=flag, confirmed_by_id=actor.user_id, organization=criteria.organization.strip(), study=criteria.study,
        window_start=criteria.window_start, window_end=criteria.window_end,
        subject=subject.strip(), message=message.strip(), patients_notified=len(patients),
    )
    incident.full_clean()
    incident.save()
    key = f"incident:{incident.pk}"
    notices_add(
        patient_ids=[p.pk for p in patients], kind=Notice.Kind.INCIDENT, key=key, subject=incident.subject,
        body=incident.message, link=reverse("flags-mine"),
    )
    ids = list(Notice.objects.filter(kind=Notice.Kind.INCIDENT, key=key).values_list("pk", flat=True))
    transaction.on_commit(lambda: _send_emails(ids))
    _event(flag, FlagEvent.Kind.INCIDENT, actor, details={"incident": incident.pk, "patients": len(patients)})
    _touch(flag)
    return incident

"""Writes for flags, the privacy office's work on them, incident notices and patient notices.

Who may call what:
- ``flag_create``, ``flag_reply``, ``notices_mark_read``: the patient, for their own record (the
  view has already narrowed the study or access event through a selector).
- ``flag_claim``, ``flag_assign``, ``flag_note``, ``flag_message``, ``flag_transition``,
  ``flag_integrity_recheck``, ``incident_confirm``: a privacy officer holding the flag
  (``flags.selectors.flag_for_officer``); each re-checks the officer and the hold.
- ``flags_from_integrity_alerts``: the periodic task and the queue page (no user).

Status changes follow ``TRANSITIONS``; anything else raises ``ValidationError``. Every change the
patient can see writes a ``Notice`` and, after commit, an email with no clinical detail.
Reads of patient data (the officer's flag page, the integrity re-check) are audited by the
callers here with ``audit.services.record_portal_access`` in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.sites.models import Site
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AccessEvent
from audit.services import record_portal_access
from flags.models import Flag, FlagEvent, Incident, Notice
from imaging.models import IntegrityAlert, Patient, Study

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


def _require_officer(actor) -> None:
    if not getattr(actor, "is_privacy_officer", False):
        raise PermissionDenied("Only the privacy office may do this.")


def _require_holder(actor, flag: Flag) -> None:
    _require_officer(actor)
    if flag.assignee_id != actor.pk:
        raise PermissionDenied("Only the officer holding this flag may work on it.")


def _locked(flag: Flag) -> Flag:
    """Re-read the flag under a row lock: two officers (or an officer and the patient) acting at
    once must not both move it from the same status."""
    return Flag.objects.select_for_update(of=("self",)).select_related("patient", "patient__user", "study").get(pk=flag.pk)


def _event(flag: Flag, kind: str, actor=None, *, text: str = "", from_status: str = "", to_status: str = "", details=None) -> FlagEvent:
    event = FlagEvent(
        flag=flag, kind=kind, actor=actor, text=text, from_status=from_status, to_status=to_status, details=details or {}
    )
    event.full_clean()
    event.save()
    return event


def _touch(flag: Flag, *fields: str) -> None:
    flag.updated_at = timezone.now()
    flag.full_clean()
    flag.save(update_fields=["updated_at", *fields])


# --- Study status ----------------------------------------------------------------------------


def _study_status_sync(study: Study | None) -> None:
    """A study with any open flag is "under review"; when its last flag closes it is available
    again. Locked so a flag closing and another opening at once cannot leave it wrong."""
    if study is None:
        return
    study = Study.objects.select_for_update().get(pk=study.pk)
    flagged = Flag.objects.filter(study=study).exclude(status__in=Flag.CLOSED).exists()
    wanted = Study.Status.UNDER_REVIEW if flagged else Study.Status.AVAILABLE
    if study.status != wanted:
        study.status = wanted
        study.save(update_fields=["status", "updated_at"])


# --- Notices ---------------------------------------------------------------------------------


def _send_emails(notice_ids: list[int]) -> None:
    """Email each notice's patient that there is news, after commit (a rolled-back change sends
    nothing). Flag updates say only that there is an update; the text stays in the portal."""
    notices = Notice.objects.filter(pk__in=notice_ids).select_related("patient__user", "incident")
    url = f"https://{Site.objects.get_current().domain}{reverse('flags-mine')}"
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


def _notify(patient: Patient, *, subject: str, body: str, flag: Flag | None = None, incident: Incident | None = None) -> Notice:
    notice = Notice(patient=patient, flag=flag, incident=incident, subject=subject, body=body)
    notice.full_clean()
    notice.save()
    transaction.on_commit(lambda: _send_emails([notice.pk]))
    return notice


def _notify_flag(flag: Flag, body: str) -> None:
    if flag.from_integrity_check:
        return  # raised by the system, not the patient: nothing of theirs to update
    _notify(flag.patient, flag=flag, subject=_("An update on your report #%(id)s") % {"id": flag.pk}, body=body)


@transaction.atomic
def notices_mark_read(*, actor, patient: Patient) -> int:
    """The patient marks their notices read. Returns how many changed."""
    if patient.user_id != actor.pk:
        raise PermissionDenied("Only the patient may mark their notices read.")
    return Notice.objects.filter(patient=patient, read_at__isnull=True).update(read_at=timezone.now())


# --- Patient actions ---------------------------------------------------------------------------


@transaction.atomic
def flag_create(
    *, actor, patient: Patient, category: str, description: str, study: Study | None = None, access_event: AccessEvent | None = None
) -> Flag:
    """The patient flags one of their studies or access-log entries.

    The caller has narrowed ``study`` / ``access_event`` to the patient (selectors). Rejects a
    second open flag on the same thing. Sets the study "under review"; notifies the patient.
    """
    if patient.user_id is None or patient.user_id != actor.pk:
        raise PermissionDenied("Only the patient may flag their own records.")
    if (study is None) == (access_event is None):
        raise ValidationError("Flag either a study or an access-log entry.")
    target = study or access_event
    if target.patient_id != patient.pk:
        raise PermissionDenied("That record belongs to another patient.")
    allowed = STUDY_CATEGORIES if study is not None else EVENT_CATEGORIES
    if category not in allowed:
        raise ValidationError({"category": _("Choose one of the reasons listed.")})
    existing = Flag.objects.filter(patient=patient, study=study, access_event=access_event).exclude(status__in=Flag.CLOSED)
    if existing.exists():
        raise ValidationError(_("You have already reported this, and the report is still open."))
    now = timezone.now()
    flag = Flag(
        patient=patient,
        study=study,
        access_event=access_event,
        raised_by=actor,
        category=category,
        description=description.strip(),
        created_at=now,
        updated_at=now,
        due_at=now + dt.timedelta(days=deadline_days()),
    )
    flag.full_clean()
    flag.save()
    _event(flag, FlagEvent.Kind.CREATED, actor, to_status=flag.status, text=flag.description)
    _study_status_sync(study)
    _notify_flag(
        flag,
        _("We have received your report. The privacy office will look into it and reply by %(due)s.")
        % {"due": timezone.localtime(flag.due_at).strftime("%-d %B %Y")},
    )
    return flag


@transaction.atomic
def flag_reply(*, actor, flag: Flag, text: str) -> FlagEvent:
    """The patient answers the office's question. Only while the flag waits for them
    (needs_info); the flag goes back to in_review."""
    flag = _locked(flag)
    if flag.patient.user_id != actor.pk:
        raise PermissionDenied("Only the patient may reply to their report.")
    if flag.status != S.NEEDS_INFO:
        raise ValidationError(_("The privacy office is not waiting for a reply on this report."))
    text = text.strip()
    if not text:
        raise ValidationError({"text": _("Write your reply.")})
    event = _event(flag, FlagEvent.Kind.MESSAGE_FROM_PATIENT, actor, text=text)
    _set_status(flag, S.IN_REVIEW, actor)
    _notify_flag(flag, _("We have received your reply. The privacy office will continue its review."))
    return event


# --- Office actions ------------------------------------------------------------------------


def _set_status(flag: Flag, to: str, actor, *, resolution: str = "") -> None:
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
        _study_status_sync(flag.study)
        if flag.integrity_alert_id:
            IntegrityAlert.objects.filter(pk=flag.integrity_alert_id, resolved_at__isnull=True).update(resolved_at=timezone.now())


@transaction.atomic
def flag_transition(*, actor, flag: Flag, to: str, resolution: str = "") -> Flag:
    """The holding officer changes the status (per ``TRANSITIONS``); closing needs a resolution
    for the patient. The patient is notified."""
    flag = _locked(flag)
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
def flag_claim(*, actor, flag: Flag) -> Flag:
    """An officer takes an unassigned flag; an open flag moves to in_review."""
    _require_officer(actor)
    flag = _locked(flag)
    if flag.assignee_id not in (None, actor.pk):
        raise PermissionDenied("Another officer holds this flag.")
    if flag.assignee_id is None:
        flag.assignee = actor
        _touch(flag, "assignee")
        _event(flag, FlagEvent.Kind.CLAIMED, actor)
    if flag.status == S.OPEN:
        _set_status(flag, S.IN_REVIEW, actor)
        _notify_flag(flag, _("The privacy office has started reviewing your report."))
    return flag


@transaction.atomic
def flag_assign(*, actor, flag: Flag, assignee) -> Flag:
    """An officer hands a flag they hold (or an unassigned one) to an officer, themselves included."""
    _require_officer(actor)
    if not getattr(assignee, "is_privacy_officer", False) or not assignee.is_active:
        raise ValidationError({"assignee": _("Choose an active privacy officer.")})
    flag = _locked(flag)
    if flag.assignee_id not in (None, actor.pk):
        raise PermissionDenied("Another officer holds this flag.")
    previous = flag.assignee
    flag.assignee = assignee
    _touch(flag, "assignee")
    _event(
        flag, FlagEvent.Kind.ASSIGNED, actor,
        details={"from": previous.email if previous else None, "to": assignee.email},
    )
    return flag


@transaction.atomic
def flag_note(*, actor, flag: Flag, text: str) -> FlagEvent:
    """An internal note; the patient never sees it and is not notified."""
    flag = _locked(flag)
    _require_holder(actor, flag)
    if not text.strip():
        raise ValidationError({"text": _("Write the note.")})
    event = _event(flag, FlagEvent.Kind.NOTE, actor, text=text.strip())
    _touch(flag)
    return event


@transaction.atomic
def flag_message(*, actor, flag: Flag, text: str, ask_for_info: bool = False) -> FlagEvent:
    """A message to the patient, shown on their report; ``ask_for_info`` also moves the flag to
    needs_info so they can reply. The patient is notified."""
    flag = _locked(flag)
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


def flag_subject_study(flag: Flag) -> Study | None:
    """The study a flag is about: its own, or the one its access event touched."""
    if flag.study_id:
        return flag.study
    return flag.access_event.study if flag.access_event_id else None


@transaction.atomic
def flag_integrity_recheck(request: HttpRequest, *, flag: Flag):
    """The holding officer re-hashes the flag's study files now (``imaging.services.
    instances_verify``). A look at patient data: one access event (privacy investigation)."""
    from imaging.services import instances_verify

    flag = _locked(flag)
    _require_holder(request.user, flag)
    study = flag_subject_study(flag)
    if study is None:
        raise ValidationError(_("This access-log entry is not about a particular study; there are no files to check."))
    result = instances_verify(study=study)
    record_portal_access(
        request, patient=flag.patient, study=study, action=AccessEvent.Action.QUERY,
        details={"page": "flag", "flag": flag.pk, "integrity_recheck": True},
    )
    summary = {"checked": result.checked, "ok": result.ok, "mismatched": result.mismatched, "missing": result.missing}
    _event(flag, FlagEvent.Kind.INTEGRITY_RECHECK, request.user, details=summary)
    _touch(flag)
    return result


# --- Integrity alerts into the queue -----------------------------------------------------------


@transaction.atomic
def flags_from_integrity_alerts() -> int:
    """One ``suspected_tampering`` flag for each open IntegrityAlert that has none.

    Imaging must not import flags, so the flow runs this way round: the periodic task
    ``flags.sync_integrity_alerts`` and every load of the queue call this. Idempotent: alerts
    are locked (skipping any another caller holds) and the one-to-one column allows one flag
    per alert. Returns how many flags it created.
    """
    alerts = (
        IntegrityAlert.objects.select_for_update(skip_locked=True, of=("self",))
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
        _event(flag, FlagEvent.Kind.CREATED, None, to_status=flag.status, details={"integrity_alert": alert.pk, "kind": alert.kind})
        _study_status_sync(study)
        created += 1
    return created


# --- Incidents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentCriteria:
    window_start: dt.datetime
    window_end: dt.datetime
    organization: str = ""
    study: Study | None = None


def incident_patients(criteria: IncidentCriteria):
    """The patients an incident concerns: anyone with an access event in the window from the
    organisation (case-insensitive, exact) and, if given, on the study. At least one of
    organisation or study is required, or "everyone in the window" would be a slip of the hand."""
    if not criteria.organization.strip() and criteria.study is None:
        raise ValidationError(_("Choose an organisation, a study, or both."))
    if criteria.window_end < criteria.window_start:
        raise ValidationError(_("The time window ends before it starts."))
    events = AccessEvent.objects.filter(occurred_at__gte=criteria.window_start, occurred_at__lte=criteria.window_end)
    if criteria.organization.strip():
        events = events.filter(organization__iexact=criteria.organization.strip())
    if criteria.study is not None:
        events = events.filter(study=criteria.study)
    return Patient.objects.filter(pk__in=events.values("patient_id")).order_by("pk")


@transaction.atomic
def incident_confirm(*, actor, flag: Flag, criteria: IncidentCriteria, subject: str, message: str) -> Incident:
    """The holding officer confirms an incident and notifies exactly the patients the criteria
    choose (portal notice + email carrying the office's message, which the form asks to keep
    free of clinical detail). The officer is not shown who they are: only the count."""
    flag = _locked(flag)
    _require_holder(actor, flag)
    if not subject.strip() or not message.strip():
        raise ValidationError(_("Write a subject and a message for the patients."))
    patients = list(incident_patients(criteria))
    incident = Incident(
        flag=flag, confirmed_by=actor, organization=criteria.organization.strip(), study=criteria.study,
        window_start=criteria.window_start, window_end=criteria.window_end,
        subject=subject.strip(), message=message.strip(), patients_notified=len(patients),
    )
    incident.full_clean()
    incident.save()
    notices = [Notice(patient=p, incident=incident, subject=incident.subject, body=incident.message) for p in patients]
    Notice.objects.bulk_create(notices)
    ids = [n.pk for n in notices]
    transaction.on_commit(lambda: _send_emails(ids))
    _event(flag, FlagEvent.Kind.INCIDENT, actor, details={"incident": incident.pk, "patients": len(patients)})
    _touch(flag)
    return incident

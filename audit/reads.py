"""Audited reads of the access log: select and record in one transaction.

Reading one's access log is itself a look at patient data (who saw the scans, and why), so
opening the page and downloading it each write one access event, in the same transaction as the
read (docs/security.md §13). The views call these and only present what they return; they never
record. Each takes the ``actor`` and reads through ``audit.selectors`` (``for_actor``); an account
without its own patient record gets ``Http404`` and nothing is recorded.

Writes to the log itself (``record_access``, the chain, verification) stay in ``audit.services``;
these record through ``core.access_log.record``, the port every app's audited read uses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from django.db import transaction
from django.db.models import QuerySet

from audit import checkpoints, selectors
from audit.models import AccessEvent
from audit.selectors import LogFilters, LogPage, LogRow, LogSummary, OwnPage
from core import access_log
from core.actor import Actor
from imaging.models import Patient
from imaging.selectors import patient_own


@dataclass
class AccessLogView:
    patient: Patient
    visit: AccessEvent  # this visit, as recorded
    last_visit: dt.datetime | None  # the visit before this one: "new since your last visit"
    page: LogPage | None  # others' accesses (or everything), one row each; None for own actions
    rows: list[LogRow]
    summary: LogSummary
    own: OwnPage | None = None  # "Your own actions": one line per day


@transaction.atomic
def access_log_open(*, actor: Actor, filters: LogFilters | None = None, before: str = "") -> AccessLogView:
    """The patient opens their access log: one page of it (``before``: the keyset cursor),
    narrowed by ``filters``, with the 12-month summary. By default the page lists others'
    accesses; ``filters.show`` "own" gives the patient's own actions one line per day (a month
    per page, ``before`` then being that month's first day), "all" every access.

    Callers: the access-log page. Patients only: an account with no patient record of its own
    (an officer, an administrator) gets ``Http404`` and nothing is recorded. Records one access
    event (view, details ``{"page": "access_log"}``) before reading, so the page lists this visit
    too; the event is returned as ``visit`` and "your last visit" is the one before it.
    """
    patient = patient_own(actor=actor)
    visit = access_log.record(
        actor=actor, patient=patient, action=AccessEvent.Action.VIEW, details={"page": selectors.LOG_PAGE}
    )
    last_visit = selectors.last_visit(actor=actor, before=visit)
    filters = filters or LogFilters()
    events = selectors.filtered_events(actor=actor, filters=filters)
    summary = selectors.log_summary(actor=actor, last_visit_at=last_visit)
    if filters.show == selectors.SHOW_OWN:
        own = selectors.own_days(events, before=before)
        return AccessLogView(patient, visit, last_visit, None, [], summary, own)
    page = selectors.log_page(events, before=before)
    rows = selectors.log_rows(actor=actor, events=page.events, last_visit=last_visit, patient_name=patient.name)
    return AccessLogView(patient, visit, last_visit, page, rows, summary)


@transaction.atomic
def access_log_download(
    *, actor: Actor, filters: LogFilters | None = None, fmt: Literal["csv"] = "csv"
) -> QuerySet[AccessEvent]:
    """The patient downloads their access log (narrowed by ``filters``) as a file.

    Callers: the CSV download. Needs a recent reauthentication (docs/security.md §6): the view
    checks it (and sends the browser to the password page), and so does this service, so no other
    caller can skip it. ``Http404`` for an account without its own patient record, recording
    nothing. Records one access event (download, details ``{"page": "access_log_csv",
    "filtered": <whether any filter narrowed the file>}``) and returns the events, newest first,
    for the caller to stream in chunks.
    """
    if fmt != "csv":
        raise ValueError(f"unknown access-log format {fmt!r}")
    actor.require_recent_reauthentication()
    patient = patient_own(actor=actor)
    filters = filters or LogFilters()
    access_log.record(
        actor=actor, patient=patient, action=AccessEvent.Action.DOWNLOAD,
        details={"page": f"access_log_{fmt}", "filtered": filters.active},
    )
    return selectors.filtered_events(actor=actor, filters=filters)


@transaction.atomic
def access_log_receipt(*, actor: Actor) -> dict:
    """The patient downloads a receipt of their access log: their newest entry covered by a signed
    checkpoint, that checkpoint, and the Merkle proof linking them (audit/checkpoints.py). Kept
    outside the hospital, it lets anyone later prove with ``verify_audit --receipt`` that no entry
    up to it was removed or changed.

    Callers: the receipt download. Patients only (``Http404`` otherwise, recording nothing).
    Records one access event (download, details ``{"page": "access_log_receipt"}``) first, in
    the same transaction, so a checkpoint made for this receipt covers the download too. Holds
    hashes and ids only, no accessor's details, so no reauthentication is asked for.
    """
    patient = patient_own(actor=actor)
    access_log.record(
        actor=actor, patient=patient, action=AccessEvent.Action.DOWNLOAD, details={"page": RECEIPT_PAGE}
    )
    return checkpoints.receipt_for(patient)


RECEIPT_PAGE = "access_log_receipt"

"""Writes for notices: adding them (the services of other apps) and marking them read (the patient).

``notice_add`` and ``notices_add`` are called from inside another service's transaction, by the
service that knows the news (flags, exports, audit's access notifications, consent), whoever its
actor is: the notice is the system telling the patient, not a read of their records, so nothing
is recorded in the access log. Marking read is the patient's own, on their own notices; it reads
no patient data and records nothing either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.actor import Actor
from notices import selectors
from notices.models import Notice


def _build(*, patient_id: int, kind: str, key: str, subject: str, link: str, body: str = "") -> Notice:
    if not link.startswith("/") or link.startswith("//"):
        raise ValidationError({"link": "A notice links to a page of this site (a path)."})
    notice = Notice(patient_id=patient_id, kind=kind, key=key, subject=subject, body=body, link=link)
    # validate_constraints=False: the once-per-thing constraint is the database's to enforce
    # (notice_add's ignore_conflicts), not a query per notice.
    notice.full_clean(exclude=["patient"], validate_constraints=False)
    return notice


def notice_add(*, patient_id: int, kind: str, key: str, subject: str, link: str, body: str = "") -> Notice | None:
    """Tell the patient something is new. Returns the notice, or None when this thing
    (``kind`` and ``key``, for every kind but report updates) was already told.

    Callers: other apps' services, in their transaction (a rolled-back change leaves no notice).
    """
    notice = _build(patient_id=patient_id, kind=kind, key=key, subject=subject, link=link, body=body)
    if kind != Notice.Kind.REPORT_UPDATE and Notice.objects.filter(patient_id=patient_id, kind=kind, key=key).exists():
        return None
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction goes on either way
            notice.save()
    except IntegrityError:  # told at this very moment by a concurrent retry
        return None
    return notice


def notices_add(
    *, patient_ids: Iterable[int], kind: str, key: str, subject: str, link: str, body: str = "",
    created_at: dt.datetime | None = None,
) -> int:
    """The same news for many patients at once (a new consent policy, an incident), each told
    once. Returns how many notices were written. Callers: other apps' services; ``created_at``
    (default now) only for news that happened earlier (the demo's policy of two months ago)."""
    if kind == Notice.Kind.REPORT_UPDATE:
        raise ValueError("Report updates are added one at a time.")
    told = set(Notice.objects.filter(kind=kind, key=key).values_list("patient_id", flat=True))
    rows = [
        _build(patient_id=pid, kind=kind, key=key, subject=subject, link=link, body=body)
        for pid in dict.fromkeys(patient_ids) if pid not in told
    ]
    if created_at is not None:
        for row in rows:
            row.created_at = created_at
    Notice.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return len(rows)


def _require_patient(actor: Actor) -> None:
    if actor.patient_id is None:
        raise PermissionDenied("Only the patient may mark their notices read.")


@transaction.atomic
def notice_mark_read(*, actor: Actor, notice_id: int) -> Notice:
    """The patient marks one of their notices read (``Http404`` for anyone else's)."""
    _require_patient(actor)
    notice = selectors.notice_get(actor=actor, notice_id=notice_id)
    if notice.read_at is None:
        notice.read_at = timezone.now()
        notice.save(update_fields=["read_at"])
    return notice


@transaction.atomic
def notices_mark_all_read(*, actor: Actor, kinds: Iterable[str] | None = None) -> int:
    """The patient marks all their unread notices (of ``kinds``, when given) read. Returns how
    many changed."""
    _require_patient(actor)
    unread = Notice.objects.for_actor(actor).filter(patient_id=actor.patient_id, read_at__isnull=True)
    if kinds is not None:
        unread = unread.filter(kind__in=list(kinds))
    return unread.update(read_at=timezone.now())

"""Reads of the patient's notices, narrowed by ``Notice.objects.for_actor`` (docs/security.md §9)."""

from __future__ import annotations

from collections.abc import Iterable

from django.shortcuts import get_object_or_404

from core.actor import Actor
from notices.models import Notice


def _own(actor: Actor):
    # Notices are the patient's own news: an officer investigating a flag (who reaches that
    # patient's records) does not read or count them.
    if actor.patient_id is None:
        return Notice.objects.none()
    return Notice.objects.for_actor(actor).filter(patient_id=actor.patient_id)


def unread_count(*, actor: Actor) -> int:
    """How many notices the patient has not read: the bell's number on every page. One query on
    the partial index ``notices_unread``; 0 (no query) for anyone without a patient record."""
    if actor.patient_id is None:
        return 0
    return _own(actor).filter(read_at__isnull=True).count()


def notice_list(*, actor: Actor, kinds: Iterable[str] | None = None, limit: int = 50) -> list[Notice]:
    """The patient's newest notices (of ``kinds``, when given), newest first."""
    notices = _own(actor)
    if kinds is not None:
        notices = notices.filter(kind__in=list(kinds))
    return list(notices[:limit])


def notice_get(*, actor: Actor, notice_id: int) -> Notice:
    """One of the patient's notices; ``Http404`` for anyone else's, as for a missing one."""
    return get_object_or_404(_own(actor), pk=notice_id)

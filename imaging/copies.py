"""Which original each file of a de-identified copy came from, kept server side only.

A de-identified copy names nobody and carries new UIDs, so on its own it cannot be traced back;
Lightbox keeps the link here so that "Verify a copy" can tell a patient "this is from your
de-identified copy of <study> made on <date>" instead of "not found in your records".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from imaging.models import DeidentifiedCopy, Instance


@dataclass(frozen=True)
class CopyRecord:
    """One file of a de-identified archive, as the packager made it."""

    sop_uid: str  # the copy's new SOP Instance UID
    original_id: int  # imaging.Instance pk
    pixel_sha256: str
    pixels_masked: bool


@transaction.atomic
def deidentified_copies_record(*, records: Iterable[CopyRecord], export_ref: int, made_at: dt.datetime) -> int:
    """Remember the originals of one de-identified archive's files; returns how many rows.

    Callers: ``exports.services`` once an archive is published (the Celery job, or the privacy
    office's paper request with ``export_ref=0``). Records no access event: the export that made
    the copy is the audited act. New UIDs are random per archive, so a clash means the same file
    was recorded twice (a retried publish) and is ignored.
    """
    rows = [
        DeidentifiedCopy(sop_uid=r.sop_uid, original_id=r.original_id, export_ref=export_ref, made_at=made_at,
                         pixel_sha256=r.pixel_sha256, pixels_masked=r.pixels_masked)
        for r in records
    ]
    DeidentifiedCopy.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return len(rows)


def deidentified_copy_among(instances: Iterable[Instance] | object, sop_uid: str) -> DeidentifiedCopy | None:
    """The record of a de-identified file whose original is among ``instances`` (a queryset the
    caller already narrowed to one patient), or None: another patient's copy is "unknown"."""
    if not sop_uid:
        return None
    return (
        DeidentifiedCopy.objects.filter(sop_uid=sop_uid, original__in=instances)
        .select_related("original__series__study")
        .first()
    )

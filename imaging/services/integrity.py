"""The integrity of stored files and the status of a study: re-hashing, pixel checks, conflict
alerts, and "under review".

- ``instances_verify``: callers are the nightly ``imaging.verify_integrity`` task and the privacy
  office's re-check of a flagged study (``flags.services``). Not audited as an access (it reads
  bytes, not patient data); findings become ``IntegrityAlert`` rows.
- ``conflict_alert_raise``: caller is ingest, when a different file arrives under a known SOP
  Instance UID. Not audited itself: the import records its ingest event.
- ``study_status_set``: caller is ``flags.services`` when a flag on the study opens or closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.actor import Actor
from imaging import storage
from imaging.models import Instance, IntegrityAlert, Study

logger = logging.getLogger(__name__)


def conflict_alert_raise(existing: Instance, *, found: Path, digest: storage.Digest, source: str) -> IntegrityAlert:
    """A file at ``found`` (hashed as ``digest``) came in under ``existing``'s SOP Instance UID with
    different bytes: keep it as evidence under its own content address and raise one open
    ``conflict`` alert (the same file arriving again does not repeat it). The original row and
    file are never touched. ``source`` names where the file came from (a path or ZIP member)."""
    found_path = storage.store_file(found, digest)
    alert, _ = IntegrityAlert.objects.get_or_create(
        instance=existing, kind=IntegrityAlert.Kind.CONFLICT, found_sha256=digest.sha256, resolved_at=None,
        defaults={
            "expected_sha256": existing.sha256,
            "details": {"source": source[:500], "found_size": digest.size, "found_storage_path": found_path},
        },
    )
    return alert


@transaction.atomic
def study_status_set(*, actor: Actor, study: Study, status: str) -> Study:
    """Set ``study``'s status ("available" or "under review"), saving only that field.

    Callers: ``flags.services``, when the first flag on the study opens (under review) and when
    its last one closes (available), as the actor who changed the flag (an officer narrowed to
    the patient with ``actor.investigating``). Raises ``ValidationError`` for a status that is
    not a ``Study.Status`` and ``Study.DoesNotExist`` for a study outside the actor's reach.
    Not audited as an access: the flag's own timeline records why the status changed.
    """
    if status not in Study.Status.values:
        raise ValidationError({"status": f"Unknown study status {status!r}."})
    locked = Study.objects.for_actor(actor).select_for_update().get(pk=study.pk)
    if locked.status != status:
        locked.status = status
        # updated_at is auto_now: it changes with the status and with nothing else.
        locked.save(update_fields=["status", "updated_at"])
    study.status = status
    return locked


def integrity_alert_resolve(*, actor: Actor, alert_id: int) -> bool:
    """Mark an integrity alert resolved; True if it was open. Callers: ``flags.services`` when the
    office closes the flag raised for it, as the officer narrowed to the patient. An alert outside
    the actor's reach is left alone (False). Not audited as an access: the flag's timeline says
    who closed it and why."""
    return bool(
        IntegrityAlert.objects.for_actor(actor)
        .filter(pk=alert_id, resolved_at__isnull=True)
        .update(resolved_at=timezone.now())
    )


# --- Integrity ----------------------------------------------------------------------------


@dataclass
class VerifyResult:
    checked: int = 0
    ok: int = 0
    mismatched: int = 0
    missing: int = 0
    alerts_created: int = 0


def instances_verify(*, limit: int | None = None, study: Study | None = None) -> VerifyResult:
    """Re-hash stored files (streaming) and compare with the SHA-256 taken at ingest.

    Callers: the nightly ``imaging.verify_integrity`` task (all files, least recently verified
    first) and the privacy office's re-check of one ``study``. Sets ``last_verified_at`` and
    ``verified_ok``; a mismatch or a missing file raises one ``IntegrityAlert`` that stays open
    until resolved (later runs do not repeat it). Not an access to patient data: not audited.
    """
    result = VerifyResult()
    # Never-verified files first, then the longest unverified (so a limited run makes progress).
    qs = Instance.objects.order_by(F("last_verified_at").asc(nulls_first=True), "pk")
    if study is not None:
        qs = qs.filter(series__study=study)
    if limit is not None:
        qs = qs[:limit]
    for instance in qs.iterator(chunk_size=500):
        digest = storage.stored_digest(instance.storage_path)
        result.checked += 1
        if digest is None:
            kind, found = IntegrityAlert.Kind.MISSING, ""
            result.missing += 1
        elif digest.sha256 != instance.sha256:
            kind, found = IntegrityAlert.Kind.MISMATCH, digest.sha256
            result.mismatched += 1
        else:
            kind, found = None, digest.sha256
            result.ok += 1
        with transaction.atomic():
            Instance.objects.filter(pk=instance.pk).update(last_verified_at=timezone.now(), verified_ok=kind is None)
            if kind is not None and not IntegrityAlert.objects.filter(
                instance=instance, kind=kind, resolved_at__isnull=True
            ).exists():
                IntegrityAlert.objects.create(
                    instance=instance, kind=kind, expected_sha256=instance.sha256, found_sha256=found,
                    details={"storage_path": instance.storage_path, "found_size": digest.size if digest else None},
                )
                result.alerts_created += 1
    if result.mismatched or result.missing:
        logger.warning("integrity check: %s mismatched, %s missing of %s", result.mismatched, result.missing, result.checked)
    return result

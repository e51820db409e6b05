"""Celery tasks for imaging (STYLE.md "Celery": ids in, rows out, no patient data in arguments)."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from core.actor import Actor
from imaging import storage
from imaging.models import Study
from imaging.pacs import sync
from imaging.pacs.client import pacs_configured
from imaging.pacs.errors import PacsError, PacsNotConfigured
from imaging.pixel_text import pixel_text_for_study
from imaging.services.ingest import IMPORTER_NAME
from imaging.services.integrity import instances_verify
from imaging.services.rendering import thumbnails_render

logger = logging.getLogger(__name__)

# PACS outages and timeouts are retried with exponential backoff (1, 2, 4 ... minutes, capped at
# 30, with jitter so many workers do not return at once); after the last retry the
# administrators are told. A PACS problem never reaches a portal request: only workers call it.
_PACS_RETRY = {
    "autoretry_for": (PacsError,),
    "dont_autoretry_for": (PacsNotConfigured,),
    "retry_backoff": 60,
    "retry_backoff_max": 30 * 60,
    "retry_jitter": True,
    "max_retries": 6,
    "acks_late": True,
}


@shared_task(name="imaging.verify_integrity")
def verify_integrity() -> None:
    """Re-hash every stored DICOM file; mismatches and missing files become IntegrityAlerts.

    Scheduled nightly by ``CELERY_BEAT_SCHEDULE``. Idempotent: a second run re-checks and raises
    no duplicate alerts, so a redelivery after a lost worker (acks_late) is harmless. Also
    sweeps ``.incoming/`` (``storage.purge_incoming``), so a killed import's copies go within a
    day even when no import runs after it.
    """
    storage.purge_incoming()
    result = instances_verify()
    logger.info(
        "integrity check: %s checked, %s ok, %s mismatched, %s missing, %s new alerts",
        result.checked, result.ok, result.mismatched, result.missing, result.alerts_created,
    )


class _PacsTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        patient_id = args[0] if args else kwargs.get("patient_id")
        message = str(exc) if isinstance(exc, PacsError) else f"Sync failed ({type(exc).__name__})."
        sync.pacs_sync_failed(error=message, patient_id=patient_id)


@shared_task(name="imaging.pacs_sync", base=_PacsTask, **_PACS_RETRY)
def pacs_sync() -> dict:
    """Periodic sync of every activated patient's studies (Celery beat, PACS_SYNC_INTERVAL_MINUTES).

    Idempotent and restartable: a redelivered or retried run imports only what is still missing.
    Returns counts only.
    """
    if not pacs_configured():
        return {"configured": False}
    return sync.pacs_sync(actor=Actor.system(IMPORTER_NAME)).as_dict()


@shared_task(name="imaging.pacs_fetch_patient", base=_PacsTask, **_PACS_RETRY)
def pacs_fetch_patient(patient_id: int) -> dict:
    """Fetch one newly activated patient's history (queued by ``patient_account_activate``)."""
    if not pacs_configured():
        return {"configured": False}
    return sync.pacs_sync(actor=Actor.system(IMPORTER_NAME), patient_ids=[patient_id]).as_dict()


@shared_task(name="imaging.pixel_text_check_study", acks_late=True)
def pixel_text_check_study(study_id: int) -> dict:
    """Read every image of one study for text burned into its pixels (``imaging.pixel_text``).

    Queued with the study's id (``transaction.on_commit``) after an import, or before a
    de-identified export so packaging finds the results cached. Idempotent: results are cached
    per instance, so a redelivery after a lost worker (acks_late, reject_on_worker_lost) reads
    only what is still missing. Returns counts by status only, never what was read; a study
    deleted in the meantime is a no-op.
    """
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return {}
    return pixel_text_for_study(study=study)


@shared_task(name="imaging.thumbnails_render_study", acks_late=True, reject_on_worker_lost=True)
def thumbnails_render_study(study_id: int) -> dict:
    """Render the thumbnails of one study ahead of its first page view
    (``imaging.services.rendering.thumbnails_render``). Queued with the study's id on commit of
    an import (PACS syncs import through the same service). Idempotent: cached thumbnails are
    not rendered again, so a redelivery after a lost worker is harmless. Returns counts only; a
    study deleted in the meantime renders nothing."""
    return thumbnails_render(study_id)

"""Celery tasks for imaging (STYLE.md "Celery": ids in, rows out, no patient data in arguments)."""

from __future__ import annotations

import logging

from celery import shared_task

from imaging.services import instances_verify

logger = logging.getLogger(__name__)


@shared_task(name="imaging.verify_integrity")
def verify_integrity() -> None:
    """Re-hash every stored DICOM file; mismatches and missing files become IntegrityAlerts.

    Scheduled nightly by ``CELERY_BEAT_SCHEDULE``. Idempotent: a second run re-checks and raises
    no duplicate alerts, so a redelivery after a lost worker (acks_late) is harmless.
    """
    result = instances_verify()
    logger.info(
        "integrity check: %s checked, %s ok, %s mismatched, %s missing, %s new alerts",
        result.checked, result.ok, result.mismatched, result.missing, result.alerts_created,
    )

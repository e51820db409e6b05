"""Celery tasks for flags (ids in, nothing out; no patient data in arguments or results)."""

from __future__ import annotations

import logging

from celery import shared_task

from flags.services import flags_from_integrity_alerts

logger = logging.getLogger(__name__)


@shared_task(name="flags.sync_integrity_alerts", acks_late=True)
def sync_integrity_alerts() -> int:
    """Turn open IntegrityAlerts without a flag into ``suspected_tampering`` flags in the queue.

    Scheduled by ``CELERY_BEAT_SCHEDULE`` (imaging does not import flags, so flags pulls).
    Idempotent: one flag per alert, so a redelivery creates nothing new. Returns the count.
    """
    created = flags_from_integrity_alerts()
    if created:
        logger.info("integrity alerts: %s new flags for the privacy office", created)
    return created

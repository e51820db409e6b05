"""Celery tasks for flags (ids in, nothing out; no patient data in arguments or results)."""

from __future__ import annotations

import logging

from celery import shared_task

from core.actor import Actor
from flags import services

logger = logging.getLogger(__name__)


@shared_task(name="flags.flags_from_integrity_alerts", acks_late=True)
def flags_from_integrity_alerts() -> int:
    """Turn open IntegrityAlerts without a flag into ``suspected_tampering`` flags in the queue
    (``services.flags_from_integrity_alerts``, as ``Actor.system("Integrity check")``).

    Scheduled by ``CELERY_BEAT_SCHEDULE`` (imaging does not import flags, so flags pulls; the
    queue page only reads). Idempotent: one flag per alert, so a redelivery creates nothing new.
    Returns the count.
    """
    created = services.flags_from_integrity_alerts(actor=Actor.system("Integrity check"))
    if created:
        logger.info("integrity alerts: %s new flags for the privacy office", created)
    return created

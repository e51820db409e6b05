"""Handing a queued job to Celery without letting a broker outage break the page.

Callers: ``exports.services.export_dispatch`` and ``sharing.services.push_dispatch`` (on commit
and from their reconcilers). docs/security.md §17: a job row is the source of truth; the task is
only a nudge, so a failed send leaves the row queued for the reconciler.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)


def dispatch_queued(task: Any, job_id: int, *, queued: QuerySet, what: str) -> bool:
    """``task.delay(job_id)``; then stamp ``dispatched_at`` on ``queued`` (the job's row while it
    is still queued). False, with a warning and nothing stamped, when the broker is unreachable.
    Never raises."""
    try:
        task.delay(job_id)
    except Exception:  # noqa: BLE001 - any kombu/redis connection error: the outage must not break the page
        logger.warning("%s %s: broker unavailable, left queued for the reconciler", what, job_id)
        return False
    queued.update(dispatched_at=timezone.now())
    return True

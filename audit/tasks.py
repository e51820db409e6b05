"""Celery jobs of the access log. Ids only in arguments; the work is in services."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready


@shared_task(name="audit.notify_access_events", max_retries=5, default_retry_delay=60)
def notify_access_events(event_ids: list[int]) -> None:
    """Email patients about reported events they asked to hear about. Idempotent (see
    ``audit.notifications.notify_events``), so a retry after a mail-server error is safe."""
    from audit.notifications import notify_events

    try:
        notify_events([int(i) for i in event_ids])
    except OSError as exc:  # SMTP trouble: try again later; already-sent events are skipped
        raise notify_access_events.retry(exc=exc) from exc


@shared_task(name="audit.chain_pending")
def chain_pending() -> int:
    """Chain the portal events queued while their chain head was busy that no later writer of
    the same patient picked up (beat: every AUDIT_CHAIN_PENDING_SECONDS; audit.services)."""
    from audit.services import chain_pending as chain

    return chain()


@shared_task(name="audit.create_checkpoint")
def create_checkpoint(only_if_none: bool = False) -> None:
    """Sign a checkpoint of the log (beat: every AUDIT_CHECKPOINT_MINUTES). None is made when no
    event is new since the last one, which then still covers everything. ``only_if_none``: the
    first start's checkpoint (below), made only on a database that has none yet."""
    from audit.checkpoints import checkpoint_create

    checkpoint_create(skip_unchanged=True, only_if_none=only_if_none)


@worker_ready.connect(weak=False)
def first_checkpoint(sender=None, **kwargs) -> None:
    """A new install gets its first checkpoint when its first worker starts (``make run`` and
    production both start one), not at the first beat tick. Queued, not run here: the worker's
    main process holds no database connection that its forked children would share."""
    create_checkpoint.apply_async(kwargs={"only_if_none": True})

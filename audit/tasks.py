"""Celery jobs of the access log. Ids only in arguments; the work is in services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="audit.notify_access_events", max_retries=5, default_retry_delay=60)
def notify_access_events(event_ids: list[int]) -> None:
    """Email patients about reported events they asked to hear about. Idempotent (see
    ``audit.notifications.notify_events``), so a retry after a mail-server error is safe."""
    from audit.notifications import notify_events

    try:
        notify_events([int(i) for i in event_ids])
    except OSError as exc:  # SMTP trouble: try again later; already-sent events are skipped
        raise notify_access_events.retry(exc=exc) from exc


@shared_task(name="audit.create_checkpoint")
def create_checkpoint() -> None:
    """Sign today's checkpoint of every chain head (beat: daily)."""
    from audit.checkpoints import checkpoint_create

    checkpoint_create()

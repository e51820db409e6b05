from __future__ import annotations

from celery import shared_task


@shared_task(name="portal.ping")
def ping() -> str:
    """A no-op round trip used by health checks and tests to prove a worker consumes the queue."""
    return "pong"

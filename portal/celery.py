"""The Celery app: JSON only, late acks, one task prefetched at a time (STYLE.md "Celery").

The broker comes from ``CELERY_BROKER_URL``: Redis in tests and production, Celery's filesystem
transport for the embedded default. Each worker writes a heartbeat to the shared cache every few
seconds so that ``/healthz`` can tell whether any worker is alive without a broadcast (the
filesystem transport has none).
"""

from __future__ import annotations

import os
import socket

from celery import Celery, bootsteps
from celery.signals import worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("lightbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    event_serializer="json",
    # No results backend: tasks report through their rows, never through results.
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A broker outage must not hang a web request that enqueues on commit.
    broker_connection_timeout=3,
    broker_connection_retry_on_startup=True,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
)
app.autodiscover_tasks()

# Seconds between worker heartbeats; /healthz calls a worker stale after three missed beats.
HEARTBEAT_INTERVAL = 10
HEARTBEAT_KEY = "lightbox:worker-heartbeat"


def write_heartbeat(hostname: str) -> None:
    from django.core.cache import cache
    from django.utils import timezone

    cache.set(
        HEARTBEAT_KEY,
        {"hostname": hostname, "at": timezone.now().isoformat()},
        timeout=HEARTBEAT_INTERVAL * 6,
    )


class HeartbeatStep(bootsteps.StartStopStep):
    """Writes the worker heartbeat on the worker's own timer (no task, no broadcast)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        self.tref = None
        self.hostname = getattr(worker, "hostname", None) or socket.gethostname()

    def start(self, worker):
        write_heartbeat(self.hostname)
        self.tref = worker.timer.call_repeatedly(HEARTBEAT_INTERVAL, write_heartbeat, (self.hostname,))

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()


app.steps["worker"].add(HeartbeatStep)


@worker_shutdown.connect
def _clear_heartbeat(**kwargs) -> None:
    from django.core.cache import cache

    cache.delete(HEARTBEAT_KEY)

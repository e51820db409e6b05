"""Celery tasks for exports: ids in, status on the row, nothing of the patient in messages."""

from __future__ import annotations

from celery import shared_task

from exports import services


@shared_task(name="exports.package", bind=True, max_retries=3, default_retry_delay=30)
def package_export(self, export_id: int) -> None:
    """Package one export job (``exports.services.export_package``).

    Idempotent: a redelivery after a lost worker (acks_late, reject_on_worker_lost) or a second
    dispatch by the reconciler finds the job claimed or finished and does nothing. Unexpected
    errors are retried; the final failure marks the job failed (``export_failed``).
    """
    try:
        services.export_package(export_id=export_id)
    except Exception as exc:  # noqa: BLE001 - retried, then reported via export_failed
        if self.request.retries >= self.max_retries:
            services.export_failed(export_id=export_id, error="The export could not be prepared. Please try again.")
            return
        # Back to queued so the retry's claim goes through at once.
        from exports.models import ExportRequest

        ExportRequest.objects.filter(pk=export_id, status=ExportRequest.Status.PACKAGING).update(
            status=ExportRequest.Status.QUEUED
        )
        raise self.retry(exc=exc) from None


@shared_task(name="exports.purge_expired")
def purge_expired() -> None:
    """Hourly: delete expired archives (``exports_purge_expired``)."""
    services.exports_purge_expired()


@shared_task(name="exports.reconcile")
def reconcile() -> None:
    """Every minute: re-send stuck jobs (``exports_reconcile``)."""
    services.exports_reconcile()

"""Celery tasks for sharing: ids in, status on the row, nothing of the patient in messages."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from sharing import links, services

GAVE_UP = "{reason} Lightbox tried {tries} times and has stopped. You can send the scans again later."
UNEXPECTED = "The scans could not be sent because of a problem in Lightbox. Please try again later."


def retry_delay(retries: int) -> int:
    """Seconds before try ``retries + 1``: doubling from ``SHARING_RETRY_BACKOFF``, at most
    ``SHARING_RETRY_BACKOFF_MAX`` (a partner down for a short while is not hammered, and one down
    for long is given up on within about an hour, then the patient is told)."""
    return min(settings.SHARING_RETRY_BACKOFF * 2**retries, settings.SHARING_RETRY_BACKOFF_MAX)


@shared_task(name="sharing.push", bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def push_send(self, push_id: int) -> None:
    """Send one push to its partner (``sharing.services.push_send``).

    Idempotent: a redelivery after a lost worker (acks_late, reject_on_worker_lost) or a second
    dispatch by the reconciler finds the push claimed or finished and does nothing, and sent
    instances are never sent again. A partner that cannot be reached or answers 5xx is retried
    ``SHARING_PUSH_RETRIES`` times with backoff (``retry_delay``); then, or on any unexpected
    error after the same number of tries, the push is marked failed and the patient emailed
    (``push_failed``). Records the share through the service, once, when the push completes.
    """
    retries = self.request.retries
    try:
        services.push_send(push_id=push_id)
    except services.PartnerUnavailable as exc:
        if retries >= settings.SHARING_PUSH_RETRIES:
            services.push_failed(push_id=push_id, error=GAVE_UP.format(reason=exc.reason, tries=retries + 1))
            return
        delay = retry_delay(retries)
        services.push_retry_later(push_id=push_id, claimed_at=exc.claimed_at, reason=exc.reason, delay=delay)
        raise self.retry(countdown=delay) from None
    except Exception as exc:  # noqa: BLE001 - retried, then reported via push_failed
        if retries >= settings.SHARING_PUSH_RETRIES:
            services.push_failed(push_id=push_id, error=UNEXPECTED)
            return
        services.push_release(push_id=push_id)
        raise self.retry(exc=exc, countdown=retry_delay(retries)) from None


@shared_task(name="sharing.reconcile")
def reconcile() -> None:
    """Every minute: re-send stuck pushes (``pushes_reconcile``) and delete share-link visits
    that can no longer be used (``links.visits_purge``)."""
    services.pushes_reconcile()
    links.visits_purge()

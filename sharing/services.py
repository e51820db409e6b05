"""Writes for sharing: a patient's push of studies to a partner organisation (STOW-RS), the
worker that sends it, its failure, and the reconciler.

Every service that acts for someone takes the ``actor`` (``core.actor``), keyword-only, and
reaches pushes only through ``Push.objects.for_actor(actor)``. The worker, failure and
reconciliation services act for no one (a Celery task runs them on a push id).

Audit (docs/security.md §13, §27): one AccessEvent per push, action ``share``, organisation the
partner, written through ``core.access_log.record`` in the transaction that marks the push sent,
under the push's row lock: a worker killed and restarted, or a duplicate delivery, cannot record
it twice, and a push that failed records nothing (no complete copy left the hospital; the patient
is emailed the reason instead).

Exactly once (docs/security.md §27): the worker claims the push under a row lock, sends the
instances in a fixed order and records each one the partner accepted (``PushedInstance.sent_at``;
the rows, one per push and instance, are fixed when the patient asks) before the next. A worker that takes the push over skips them: at most
the one instance that was on the wire when a worker died is sent again, and a partner's store of
the same SOP instance is idempotent (STOW-RS, PS3.18 §10.5).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import replace

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from audit.models import AccessEvent
from core import access_log
from core.actor import Actor, Kind
from core.crypto import decrypt, encrypt
from core.jobs import dispatch_queued
from core.links import site_url
from imaging.models import Instance
from imaging.pacs.client import StoreFailed, stow_connect
from imaging.selectors import patient_get, study_list
from imaging.storage import open_stored
from sharing.models import Partner, Push, PushedInstance

logger = logging.getLogger(__name__)

# How the access log names a push: Lightbox (a system actor) in the role of sending to the
# partner's archive, the partner as the organisation, so the log's sentence reads "Lightbox,
# sending to the imaging archive at <partner> shared your <study> at your request."
PUSH_ACTOR_NAME = "Lightbox"
PUSH_ACTOR_ROLE = "sending to the imaging archive"


class PartnerUnavailable(Exception):  # noqa: N818 - a condition the task retries, not a bug
    """The partner could not be reached or answered 5xx: the task tries again later
    (``push_retry_later``)."""

    def __init__(self, reason: str, *, claimed_at: dt.datetime) -> None:
        super().__init__(reason)
        self.reason, self.claimed_at = reason, claimed_at


# --- Partners (the admin) -------------------------------------------------------------------


def partner_set_password(partner: Partner, password: str) -> None:
    """Encrypt a partner's password into the row (not saved). Callers: the admin's form."""
    partner.password_encrypted = encrypt(password.encode("utf-8")) if password else ""


def _partner_password(partner: Partner) -> str:
    return decrypt(partner.password_encrypted).decode("utf-8") if partner.password_encrypted else ""


# --- Request ------------------------------------------------------------------------------


@transaction.atomic
def push_request(*, actor: Actor, study_ids: list[int], partner_id: int) -> Push:
    """The patient ``actor`` sends some of their studies to an active partner.

    Callers: the send view. Needs a recent reauthentication (checked again here). Records no
    access event yet: the share is recorded once, when the partner has every instance. The task
    is sent after commit, with the push's id only.
    """
    actor.require_recent_reauthentication()
    patient = patient_get(actor=actor)
    if patient is None:
        raise PermissionDenied("Only a patient can send their own studies.")
    partner = Partner.objects.filter(pk=partner_id, active=True).first()
    if partner is None:
        raise ValidationError("Choose one of the hospitals listed.")
    studies = list(study_list(actor=actor).filter(patient=patient, pk__in=study_ids))
    if not studies or len(studies) != len(set(study_ids)):
        raise ValidationError("Choose among your own studies.")
    instances = list(Instance.objects.filter(series__study__in=studies).order_by("pk").values_list("pk", flat=True))
    if not instances:
        raise ValidationError("These studies have no images to send.")
    push = Push(patient=patient, requested_by_id=actor.user_id, partner=partner, total=len(instances))
    push.full_clean()
    push.save()
    push.studies.set(studies)
    # The instances are fixed now: an image a PACS sync adds to a study later is not sent unasked.
    PushedInstance.objects.bulk_create([PushedInstance(push=push, instance_id=pk) for pk in instances], batch_size=1000)
    transaction.on_commit(lambda: push_dispatch(push_id=push.pk))
    return push


def push_dispatch(*, push_id: int) -> bool:
    """Send the task for a queued push; False when the broker is unreachable (the push stays
    queued for ``pushes_reconcile``). Callers: ``push_request`` on commit, the reconciler."""
    from sharing.tasks import push_send

    queued = Push.objects.filter(pk=push_id, status=Push.Status.QUEUED)
    return dispatch_queued(push_send, push_id, queued=queued, what="push")


# --- Sending (the worker) -----------------------------------------------------------------


def _claim(push_id: int) -> Push | None:
    """Lock the push and mark it sending, unless it is finished or a live worker has it."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.SHARING_STALE_AFTER)
    with transaction.atomic():
        push = Push.objects.select_for_update(of=("self",)).filter(pk=push_id).select_related("partner").first()
        if push is None or push.status not in Push.ACTIVE:
            return None
        if push.status == Push.Status.SENDING and push.heartbeat_at and push.heartbeat_at > stale:
            return None  # another worker is on it (a duplicate delivery)
        push.status = Push.Status.SENDING
        push.started_at = push.heartbeat_at = now
        push.attempts += 1
        push.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    return push


def _still_ours(push_id: int, claimed_at: dt.datetime) -> bool:
    return Push.objects.filter(pk=push_id, status=Push.Status.SENDING, started_at=claimed_at).exists()


def _to_send(push: Push):
    return (PushedInstance.objects.filter(push=push, sent_at__isnull=True)
            .select_related("instance__series__study").order_by("instance_id"))


def _read(instance: Instance) -> bytes:
    try:
        with open_stored(instance.storage_path) as fh:
            data = fh.read()
    except OSError as exc:
        raise StoreFailed("could not read an image", transient=False) from exc
    if hashlib.sha256(data).hexdigest() != instance.sha256:
        raise StoreFailed("an image failed its integrity check", transient=False)
    return data


def push_send(*, push_id: int) -> str:
    """Send every instance of a push the partner does not have yet; returns the final status.

    Callers: the ``sharing.push`` task only. Idempotent: a finished push, or one a live worker
    holds, is left alone. Raises ``PartnerUnavailable`` when the partner cannot be reached or
    answers 5xx (the push goes back to queued, and the task retries with backoff); a refusal
    (4xx, a failed SOP instance) or an unreadable file fails the push at once (``push_failed``).
    Records the share once, when the last instance is accepted (``_complete``).
    """
    push = _claim(push_id)
    if push is None:
        return Push.objects.filter(pk=push_id).values_list("status", flat=True).first() or "missing"
    claimed_at = push.started_at
    partner = push.partner
    client = stow_connect(partner.stow_url, username=partner.username, password=_partner_password(partner),
                          timeout=(settings.SHARING_CONNECT_TIMEOUT, settings.SHARING_READ_TIMEOUT))
    for row in _to_send(push).iterator(chunk_size=200):
        instance = row.instance
        if not _still_ours(push_id, claimed_at):
            return Push.objects.values_list("status", flat=True).get(pk=push_id)
        try:
            client.store_instance(instance.series.study.study_uid, _read(instance))
        except StoreFailed as exc:
            reason = f"{partner.name} {exc}."
            if exc.transient:
                raise PartnerUnavailable(reason, claimed_at=claimed_at) from exc
            push_failed(push_id=push_id, error=reason)
            return Push.Status.FAILED
        _mark_sent(row)
    return _complete(push_id, claimed_at)


@transaction.atomic
def _mark_sent(row: PushedInstance) -> None:
    now = timezone.now()
    if PushedInstance.objects.filter(pk=row.pk, sent_at__isnull=True).update(sent_at=now):
        Push.objects.filter(pk=row.push_id).update(sent=F("sent") + 1, heartbeat_at=now)
    # else another worker recorded it (it was sent twice; the partner stored it once)


@transaction.atomic
def _complete(push_id: int, claimed_at: dt.datetime) -> str:
    push = Push.objects.select_for_update(of=("self",)).select_related("partner", "patient").get(pk=push_id)
    if push.status != Push.Status.SENDING or push.started_at != claimed_at:
        return push.status  # failed, or taken over meanwhile: the one who holds it finishes
    if PushedInstance.objects.filter(push=push, sent_at__isnull=True).exists():
        return push.status  # never "sent" while an instance is not (a worker that lost the claim)
    studies = list(push.studies.all())
    push.status = Push.Status.SENT
    push.sent = push.total
    push.error = ""
    push.finished_at = timezone.now()
    push.save(update_fields=["status", "sent", "error", "finished_at"])
    access_log.record(
        actor=replace(Actor.system(PUSH_ACTOR_NAME, organization=push.partner.name), role=PUSH_ACTOR_ROLE),
        patient=push.patient,
        study=studies[0] if len(studies) == 1 else None,
        action=AccessEvent.Action.SHARE,
        purpose=AccessEvent.Purpose.PATIENT_REQUEST,
        details={"push": push.pk, "studies": len(studies), "instances": push.total},
    )
    return push.status


def push_retry_later(*, push_id: int, claimed_at: dt.datetime, reason: str, delay: int) -> None:
    """Put a push the partner did not take back to queued, due again in ``delay`` seconds (the
    task's retry is scheduled for then; the reconciler leaves it alone until a minute after).
    Callers: the task, on ``PartnerUnavailable``. Records nothing."""
    Push.objects.filter(pk=push_id, status=Push.Status.SENDING, started_at=claimed_at).update(
        status=Push.Status.QUEUED, error=f"{reason} Lightbox will try again."[:300],
        dispatched_at=timezone.now() + dt.timedelta(seconds=delay),
    )


def push_release(*, push_id: int) -> None:
    """Back to queued after an unexpected error, so the task's retry can claim it at once.
    Callers: the task. Records nothing."""
    Push.objects.filter(pk=push_id, status=Push.Status.SENDING).update(status=Push.Status.QUEUED)


@transaction.atomic
def push_failed(*, push_id: int, error: str, notify: bool = True) -> None:
    """Mark a push failed with a plain reason and email the patient (once, after commit; not when
    ``notify`` is False: the patient stopped it themselves).

    Callers: ``push_send`` (a refusal), the task's final failure and ``push_stop``. Records no
    access event.
    """
    push = Push.objects.select_for_update(of=("self",)).select_related("partner", "requested_by").filter(pk=push_id).first()
    if push is None or push.status not in Push.ACTIVE:
        return
    push.status = Push.Status.FAILED
    push.error = error[:300]
    push.finished_at = timezone.now()
    push.save(update_fields=["status", "error", "finished_at"])
    if notify:
        transaction.on_commit(lambda: _notify_failed(push))


def _notify_failed(push: Push) -> None:
    """An email that names the partner and the reason; no clinical detail."""
    user = push.requested_by
    if user is None or not user.email:
        return
    context = {"site_name": settings.SITE_NAME, "partner": push.partner.name, "reason": push.error,
               "url": site_url(reverse("sharing-list"))}
    subject = render_to_string("sharing/email/failed_subject.txt", context).strip()
    body = render_to_string("sharing/email/failed_body.txt", context)
    send_mail(subject, body, None, [user.email], fail_silently=True)


def pushes_reconcile(*, redispatch_after: int | None = None, stale_after: int | None = None) -> int:
    """Re-send pushes stuck in queued (never sent, or sent long ago) and pushes whose worker
    stopped reporting; returns how many were sent.

    Callers: the ``sharing.reconcile`` task every minute (and tests with shorter limits). A push
    sent twice is harmless: the claim lets one worker through, and sent instances are skipped.
    A queued push waiting for its retry's countdown is not re-sent before ``redispatch_after``.
    """
    now = timezone.now()
    redispatch = now - dt.timedelta(seconds=settings.SHARING_REDISPATCH_AFTER if redispatch_after is None else redispatch_after)
    stale = now - dt.timedelta(seconds=settings.SHARING_STALE_AFTER if stale_after is None else stale_after)
    queued = Push.objects.filter(status=Push.Status.QUEUED)
    stuck = list(queued.filter(dispatched_at__isnull=True).values_list("pk", flat=True))
    stuck += list(queued.filter(dispatched_at__lte=redispatch).values_list("pk", flat=True))
    for pk in Push.objects.filter(status=Push.Status.SENDING, heartbeat_at__lte=stale).values_list("pk", flat=True):
        Push.objects.filter(pk=pk, status=Push.Status.SENDING, heartbeat_at__lte=stale).update(
            status=Push.Status.QUEUED, dispatched_at=None)
        stuck.append(pk)
    return sum(1 for pk in dict.fromkeys(stuck) if push_dispatch(push_id=pk))


def push_stop(*, actor: Actor, push_id: int, reason: str = "") -> Push:
    """Stop a push not finished yet: the patient from their Sharing page (or someone acting for
    them), or the privacy office (``list_shares --revoke ID --kind push``, with a reason the patient
    is emailed). It fails with that reason, and a worker sending it stops at its next instance
    (``_still_ours``); what the partner already accepted stays there, and nothing is recorded as
    shared. ``Push.DoesNotExist`` for a push outside the actor's reach (``for_actor``);
    ``ValidationError`` for one already sent or failed (a sent push cannot be taken back)."""
    push = Push.objects.for_actor(actor).filter(pk=push_id).first()
    if push is None:
        raise Push.DoesNotExist("No such push.")
    if not push.is_active:
        raise ValidationError("This push has finished: a sent push cannot be taken back (ask the partner to delete the images).")
    if actor.kind in (Kind.PATIENT, Kind.PROXY):
        push_failed(push_id=push.pk, error="Stopped at your request.", notify=False)
    else:
        push_failed(push_id=push.pk, error=f"Stopped by the privacy office: {reason}")
    push.refresh_from_db()
    return push

"""Writes for exports: request, package (the worker), cancel, revoke, download, purge, reconcile.

Every service that acts for someone takes the ``actor`` (``core.actor``), keyword-only, and
reaches exports only through ``ExportRequest.objects.for_actor(actor)``: another patient's export
is a 404. The worker, expiry and reconciliation services act for no one (a Celery task runs them
on a job id) and read no patient's records on anyone's behalf.

Audit (docs/security.md §13), one AccessEvent per access, written through
``core.access_log.record`` in the same transaction:
- the request: ``export`` by the patient (portal) or by the privacy office (command);
- every download: ``download`` by the patient.
The packaging itself writes no event of its own: it is the fulfilment of the request already
recorded (the patient's log says "Exported" once, not once per worker attempt), and a worker
that is killed and retried must not add rows. Cancel, revoke, expiry and purge touch no patient
data and record none.

Downloads (docs/security.md §17): a download is counted and logged when it starts, so the limit
also bounds downloads running at once. It *completes* when the server has handed the archive's
last byte to the connection: the stream (``Download.chunks``) notices that the server came back
for more after the last block. One that ends before that (the browser went away, the network
broke, the server failed) is given back: it does not count against the limit, and its access
event stays in the log (the patient's data did start to leave). When the completed downloads
reach the limit the archive is deleted at once (``export_download_finished``) and the export
says so ("Downloaded and removed"). ``exports_purge_expired`` also removes any archive or
temporary file that no longer belongs to a ready or running job.

Reliability (docs/security.md §17): the job row is committed before the task is sent
(``transaction.on_commit``); sending failures (broker down) leave the job queued for
``exports_reconcile``. The worker claims the job under a row lock, writes the archive under a
temporary name and publishes it with ``os.replace`` only while it still holds the claim, so a
killed worker leaves no visible partial archive and the job completes exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from audit.models import AccessEvent
from core import access_log
from core.actor import Actor
from core.crypto import decrypt, encrypt
from core.jobs import dispatch_queued
from core.links import site_url
from exports import packaging
from exports.models import ExportRequest
from imaging.copies import deidentified_copies_record
from imaging.models import Patient, Study
from imaging.selectors import patient_get, study_list
from notices.models import Notice
from notices.services import notice_add

logger = logging.getLogger(__name__)

# Six words from the EFF large list (7,772 words here): log2(7772**6) ~ 77 bits. ZIP AES derives
# its key with only 1,000 PBKDF2-SHA1 rounds, so the passphrase itself must carry the strength.
PASSPHRASE_WORDS = 6
WORDLIST = Path(__file__).with_name("wordlist_eff_large.txt")
# Progress is written at most once per percent; more would only load the database.
_PROGRESS_STEP = 1
# Downloads are streamed by us, block by block, not handed to the server's sendfile: only then do
# we see that the last byte went out. 256 KiB keeps a 1 GB archive to ~4,000 Python iterations.
DOWNLOAD_BLOCK = 256 * 1024


class ExportUnavailable(Exception):  # noqa: N818 - a user-facing refusal, not a bug
    """The archive cannot be downloaded (expired, used up, revoked, not ready)."""


@lru_cache(maxsize=1)
def _words() -> tuple[str, ...]:
    lines = WORDLIST.read_text(encoding="utf-8").splitlines()
    return tuple(w for w in lines if w and not w.startswith("#"))


def generate_passphrase(words: int = PASSPHRASE_WORDS) -> str:
    """Random words joined by hyphens: easy to read out and type, hard to guess."""
    vocabulary = _words()
    return "-".join(secrets.choice(vocabulary) for _ in range(words))


def archive_path(export: ExportRequest) -> Path:
    return Path(settings.EXPORTS_DIR) / (export.archive_name or f"lightbox-export-{export.pk}.zip")


@dataclass(frozen=True)
class Requested:
    export: ExportRequest
    passphrase: str  # shown once to the requester, never stored in clear


# --- Request ------------------------------------------------------------------------------


def _create(*, patient: Patient, studies: list[Study], deidentify: bool, requested_by_id: int | None,
            passphrase: str, keep_until: dt.datetime | None = None) -> ExportRequest:
    if not studies:
        raise ValidationError("Choose at least one study.")
    if any(s.patient_id != patient.pk for s in studies):
        raise ValidationError("A study belongs to another patient.")
    export = ExportRequest(
        patient=patient,
        requested_by_id=requested_by_id,
        deidentify=deidentify,
        passphrase_encrypted=encrypt(passphrase.encode("utf-8")),
        max_downloads=settings.EXPORTS_MAX_DOWNLOADS,
        keep_until=keep_until,
    )
    export.full_clean()
    export.save()
    export.archive_name = f"lightbox-export-{export.pk}-{secrets.token_hex(8)}.zip"
    export.save(update_fields=["archive_name"])
    export.studies.set(studies)
    return export


@transaction.atomic
def export_request(*, actor: Actor, study_ids: list[int] | None, deidentify: bool,
                   keep_until: dt.datetime | None = None) -> Requested:
    """The patient ``actor`` asks for an archive of some of their studies (``None`` = all).
    ``keep_until``: the archive does not expire before then (a share link's end).

    Callers: the new-export view and ``sharing.links.share_create``. Needs a recent reauthentication (checked again here, with the
    actor's own record of it). Writes one AccessEvent (export, patient_request); the task is sent
    after commit, and only the id travels in it. Returns the passphrase to show once.
    """
    actor.require_recent_reauthentication()
    patient = patient_get(actor=actor)
    if patient is None:
        raise PermissionDenied("Only a patient can export their own studies.")
    own = study_list(actor=actor).filter(patient=patient)
    studies = list(own if study_ids is None else own.filter(pk__in=study_ids))
    if study_ids is not None and len(studies) != len(set(study_ids)):
        raise ValidationError("Choose among your own studies.")
    passphrase = generate_passphrase()
    export = _create(patient=patient, studies=studies, deidentify=deidentify, requested_by_id=actor.user_id,
                     passphrase=passphrase, keep_until=keep_until)
    access_log.record(
        actor=actor,
        patient=patient,
        study=studies[0] if len(studies) == 1 else None,
        action=AccessEvent.Action.EXPORT,
        details={"export": export.pk, "studies": len(studies), "deidentified": deidentify},
    )
    transaction.on_commit(lambda: export_dispatch(export_id=export.pk))
    return Requested(export, passphrase)


def export_dispatch(*, export_id: int) -> bool:
    """Send the packaging task for a queued job; False when the broker is unreachable.

    Callers: ``export_request`` (on commit) and ``exports_reconcile``. Never raises: the job
    stays queued and the reconciler tries again (docs/security.md §17). Records nothing.
    """
    from exports.tasks import package_export

    queued = ExportRequest.objects.filter(pk=export_id, status=ExportRequest.Status.QUEUED)
    return dispatch_queued(package_export, export_id, queued=queued, what="export")


# --- Packaging (the worker) ---------------------------------------------------------------


def _claim(export_id: int) -> ExportRequest | None:
    """Lock the job and mark it packaging, unless it is finished or a live worker has it."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.EXPORTS_STALE_AFTER)
    with transaction.atomic():
        export = ExportRequest.objects.select_for_update().filter(pk=export_id).first()
        if export is None or export.status not in ExportRequest.ACTIVE:
            return None
        if export.status == ExportRequest.Status.PACKAGING and export.heartbeat_at and export.heartbeat_at > stale:
            return None  # another worker is on it (a duplicate delivery)
        export.status = ExportRequest.Status.PACKAGING
        export.started_at = export.heartbeat_at = now
        export.progress = 0
        export.save(update_fields=["status", "started_at", "heartbeat_at", "progress"])
    # Leftovers of a worker that died mid-write: never visible, but they take disk space.
    final = archive_path(export)
    for leftover in final.parent.glob(packaging.temp_prefix(final) + "*"):
        leftover.unlink(missing_ok=True)
    return export


def _progress(export: ExportRequest, claimed_at: dt.datetime):
    last = {"percent": -1}

    def report(done: int, total: int) -> None:
        percent = min(99, done * 100 // total)  # 100 only once the archive is published
        if percent - last["percent"] < _PROGRESS_STEP and done != total:
            return
        last["percent"] = percent
        updated = ExportRequest.objects.filter(
            pk=export.pk, status=ExportRequest.Status.PACKAGING, started_at=claimed_at
        ).update(progress=percent, heartbeat_at=timezone.now())
        if not updated:
            raise packaging.Cancelled()

    return report


def export_package(*, export_id: int) -> str:
    """Build and publish the archive of one job. Idempotent; returns the final status.

    Callers: the ``exports.package`` task only. Records no AccessEvent (see module docstring).
    The passphrase is decrypted here, in the worker's memory only, and wiped from the row when
    packaging ends, whatever the outcome.
    """
    export = _claim(export_id)
    if export is None:
        row = ExportRequest.objects.filter(pk=export_id).values_list("status", flat=True).first()
        return row or "missing"
    claimed_at = export.started_at
    passphrase = decrypt(export.passphrase_encrypted).decode("utf-8")
    final = archive_path(export)
    try:
        tmp, result = packaging.build_archive(
            patient=export.patient,
            studies=list(export.studies.all()),
            deidentify=export.deidentify,
            passphrase=passphrase,
            final_path=final,
            on_progress=_progress(export, claimed_at),
        )
    except packaging.Cancelled:
        _wipe_passphrase(export_id)
        return ExportRequest.objects.values_list("status", flat=True).get(pk=export_id)
    except packaging.PackagingError as exc:
        export_failed(export_id=export_id, error=str(exc))
        return ExportRequest.Status.FAILED
    with transaction.atomic():
        export = ExportRequest.objects.select_for_update().get(pk=export_id)
        if export.status != ExportRequest.Status.PACKAGING or export.started_at != claimed_at:
            tmp.unlink(missing_ok=True)  # cancelled, or another worker took over meanwhile
            return export.status
        os.replace(tmp, final)  # atomic publish, under the row lock: exactly once
        now = timezone.now()
        export.status = ExportRequest.Status.READY
        export.progress = 100
        export.size, export.sha256 = result.size, result.sha256
        export.file_count, export.burned_in_count = result.file_count, len(result.burned_in)
        export.pixel_report = result.pixel_text.as_dict() if export.deidentify else {}
        export.passphrase_encrypted = ""
        export.finished_at = now
        export.expires_at = max(now + dt.timedelta(days=settings.EXPORTS_EXPIRY_DAYS), export.keep_until or now)
        export.save()
        if result.copies:
            deidentified_copies_record(records=result.copies, export_ref=export.pk, made_at=now)
        # The notification centre's notice, with the ready state (a rolled-back publish tells nobody).
        notice_add(
            patient_id=export.patient_id, kind=Notice.Kind.EXPORT_READY, key=f"export:{export.pk}",
            subject=gettext("Your export is ready to download"),
            body=gettext("The copy of your scans you asked for is ready. You need the passphrase shown when you asked for it."),
            link=reverse("exports-detail", args=[export.pk]),
        )
        transaction.on_commit(lambda: _notify_ready(export))
    return export.status


def _wipe_passphrase(export_id: int) -> None:
    ExportRequest.objects.filter(pk=export_id).update(passphrase_encrypted="")


def _notify_ready(export: ExportRequest) -> None:
    """An email that says only that an export is ready (no clinical detail, no passphrase)."""
    user = export.requested_by
    if user is None or not user.email:
        return
    context = {"site_name": settings.SITE_NAME, "url": site_url(reverse("exports-list"))}
    subject = render_to_string("exports/email/ready_subject.txt", context).strip()
    body = render_to_string("exports/email/ready_body.txt", context)
    send_mail(subject, body, None, [user.email], fail_silently=True)


@transaction.atomic
def export_failed(*, export_id: int, error: str) -> None:
    """Mark a job failed with a plain-language reason (no patient data) and wipe its passphrase.

    Callers: ``export_package`` and the task's final failure. Records nothing.
    """
    ExportRequest.objects.filter(pk=export_id, status__in=ExportRequest.ACTIVE).update(
        status=ExportRequest.Status.FAILED, error=error[:300], passphrase_encrypted="", finished_at=timezone.now()
    )
    _wipe_passphrase(export_id)  # also when the job had been cancelled meanwhile


# --- Patient actions ----------------------------------------------------------------------


def _locked(actor: Actor, export_id: int) -> ExportRequest:
    """The actor's export under a row lock (the worker and a second tab may act at once);
    ``Http404`` for anyone else's, like the selector."""
    export = ExportRequest.objects.for_actor(actor).select_for_update().filter(pk=export_id).first()
    if export is None:
        raise Http404("No such export.")
    return export


@transaction.atomic
def export_cancel(*, actor: Actor, export_id: int) -> ExportRequest:
    """The patient stops a queued or running job. The worker notices at its next file and
    removes its temporary file. Callers: the cancel view. Records nothing (no data is read)."""
    export = _locked(actor, export_id)
    if export.status in ExportRequest.ACTIVE:
        export.status = ExportRequest.Status.CANCELLED
        export.passphrase_encrypted = ""
        export.finished_at = timezone.now()
        export.save(update_fields=["status", "passphrase_encrypted", "finished_at"])
    return export


@transaction.atomic
def export_revoke(*, actor: Actor, export_id: int) -> ExportRequest:
    """The patient withdraws a ready download link; the archive is deleted at once.
    Callers: the revoke view. Records nothing (no data is read)."""
    export = _locked(actor, export_id)
    if export.status == ExportRequest.Status.READY:
        export.status = ExportRequest.Status.REVOKED
        export.archive_removed_at = timezone.now()
        export.save(update_fields=["status", "archive_removed_at"])
        archive_path(export).unlink(missing_ok=True)
    return export


@transaction.atomic
def export_mark_seen(*, actor: Actor, export_id: int) -> ExportRequest:
    """The patient dismisses the in-portal "your export is ready" notice (a POST; opening the
    export's page changes nothing). Downloading the archive also marks it seen
    (``export_download``). Callers: the dismiss view. Records nothing (no data is read)."""
    export = _locked(actor, export_id)
    if export.status == ExportRequest.Status.READY and export.notice_seen_at is None:
        export.notice_seen_at = timezone.now()
        export.save(update_fields=["notice_seen_at"])
    return export


class _Stream:
    """The archive in blocks; reports once, when the server is done with it, whether every byte
    went out (``finished(complete)``).

    A block counts as sent only when the server asks for the next one (PEP 3333: a WSGI server
    writes what it got, then iterates again), so the end of the file is reached only after the
    last block was written to the connection. A server that stops early (the client went away,
    a write failed) closes the response, and Django closes this stream with it (it is a closer
    of the response), even if it never asked for a single block. A class, not a generator: a
    generator closed before its first block never runs its ``finally``.
    """

    def __init__(self, fh, size: int, finished: Callable[[bool], None]) -> None:
        self._fh, self._size, self._finished = fh, size, finished
        self._sent = self._pending = 0
        self._closed = False

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        self._sent += self._pending  # the server came back for more: the last block was written
        self._pending = 0
        block = self._fh.read(DOWNLOAD_BLOCK)
        if not block:
            self.close()
            raise StopIteration
        self._pending = len(block)
        return block

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fh.close()
        try:
            self._finished(self._sent == self._size)
        except Exception:  # noqa: BLE001 - the response is over; log it, the purge deletes what is left
            logger.exception("export download: could not record how the download ended")


@dataclass(frozen=True)
class Download:
    export: ExportRequest
    size: int
    chunks: Iterator[bytes]  # closing it before its end is a download that broke off


@transaction.atomic
def export_download(*, actor: Actor, export_id: int) -> Download:
    """Count one download, mark the ready notice seen, and return the archive as a stream.

    Callers: the download view. Needs a recent reauthentication (checked again here). Writes one
    AccessEvent (download) when the download starts. Raises ``Http404`` for anyone else's export
    and ``ExportUnavailable`` when the link is expired, used up, revoked or not ready. When the
    stream ends, ``export_download_finished`` is called with whether it was complete (see the
    module docstring for the rule).
    """
    actor.require_recent_reauthentication()
    export = _locked(actor, export_id)
    if export.status == ExportRequest.Status.DOWNLOADED:
        raise ExportUnavailable("This file was downloaded the maximum number of times and has been deleted.")
    if export.status != ExportRequest.Status.READY:
        raise ExportUnavailable("This export cannot be downloaded.")
    if export.expires_at and export.expires_at <= timezone.now():
        raise ExportUnavailable("This download link has expired.")
    if export.downloads >= export.max_downloads:
        raise ExportUnavailable("This download link has been used the maximum number of times.")
    try:
        fh = open(archive_path(export), "rb")  # noqa: SIM115 - closed by the stream
    except FileNotFoundError as exc:
        raise ExportUnavailable("This export is no longer available.") from exc
    try:
        size = os.fstat(fh.fileno()).st_size
        export.downloads += 1
        export.notice_seen_at = export.notice_seen_at or timezone.now()
        export.save(update_fields=["downloads", "notice_seen_at"])
        access_log.record(actor=actor, patient=export.patient, action=AccessEvent.Action.DOWNLOAD,
                          details={"export": export.pk, "download": export.downloads})
    except BaseException:
        fh.close()
        raise

    def finished(complete: bool) -> None:
        export_download_finished(actor=actor, export_id=export.pk, complete=complete)

    return Download(export, size, _Stream(fh, size, finished))


@transaction.atomic
def export_download_finished(*, actor: Actor, export_id: int, complete: bool) -> ExportRequest:
    """A download of ``export_download`` ended: count it as complete, or give it back.

    Callers: the stream returned by ``export_download``, once, when the server is done with it
    (no password re-check: the download was checked when it started, and may outlast the
    reauthentication). When the completed downloads reach the limit, the export becomes
    "downloaded" and its archive is deleted once this commits (a file left behind by a crash in
    between is removed by ``exports_purge_expired``), unless a share link still uses it.
    Records nothing: the download's AccessEvent was written when it started.
    """
    export = _locked(actor, export_id)
    if not complete:
        if export.downloads > export.downloads_completed:
            export.downloads -= 1
            export.save(update_fields=["downloads"])
        return export
    export.downloads_completed += 1
    fields = ["downloads_completed"]
    used_up = export.status == ExportRequest.Status.READY and export.downloads_completed >= export.max_downloads
    # A share link that still hands this archive to its recipient (``keep_until``) keeps it: the
    # patient's own downloads are used up (``export_download`` refuses the next), and the file
    # goes when the link ends (``expires_at``, then ``exports_purge_expired``). Deleting it here
    # broke the doctor's link.
    shared = export.keep_until is not None and export.keep_until > timezone.now()
    if used_up and not shared:
        export.status = ExportRequest.Status.DOWNLOADED
        export.archive_removed_at = timezone.now()
        fields += ["status", "archive_removed_at"]
        path = archive_path(export)
        transaction.on_commit(lambda: path.unlink(missing_ok=True))
    export.save(update_fields=fields)
    return export


# --- Periodic jobs ------------------------------------------------------------------------


def exports_purge_expired() -> int:
    """Delete the archives of expired jobs and mark them expired; then remove files left behind
    (``exports_remove_leftovers``). Returns how many jobs expired.

    Callers: the hourly ``exports.purge_expired`` task. Records nothing (no data is read).
    """
    now = timezone.now()
    count = 0
    for pk in ExportRequest.objects.filter(status=ExportRequest.Status.READY, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            export = ExportRequest.objects.select_for_update().get(pk=pk)
            if export.status != ExportRequest.Status.READY:
                continue
            archive_path(export).unlink(missing_ok=True)
            export.status = ExportRequest.Status.EXPIRED
            export.archive_removed_at = now
            export.save(update_fields=["status", "archive_removed_at"])
            count += 1
    exports_remove_leftovers()
    return count


_ARCHIVE_PREFIX = "lightbox-export-"


def exports_remove_leftovers(*, grace: int | None = None) -> list[str]:
    """Delete files in ``EXPORTS_DIR`` that no job needs any more; returns their names.

    An archive is kept only while its job is ready (or, in case, still running); a worker's
    temporary file only while its job is queued or packaging. Anything else of ours (an archive
    whose deletion did not happen: a crash between the commit and the unlink, a failed unlink; a
    dead worker's temporary file of a job that failed or was cancelled) is removed. Files not
    named by us are left alone. Only files older than ``grace`` seconds (default
    ``EXPORTS_STALE_AFTER``) are considered, so an archive published a moment ago, whose job's
    commit is not visible yet, is never taken for a leftover.

    Callers: ``exports_purge_expired`` (hourly) and tests. Records nothing.
    """
    directory = Path(settings.EXPORTS_DIR)
    if not directory.is_dir():
        return []
    cutoff = time.time() - (settings.EXPORTS_STALE_AFTER if grace is None else grace)
    candidates = []
    for path in directory.iterdir():
        name = path.name
        ours = (name.startswith(_ARCHIVE_PREFIX) and name.endswith(".zip")) or name.startswith(".tmp-" + _ARCHIVE_PREFIX)
        if ours and path.is_file() and path.stat().st_mtime < cutoff:
            candidates.append(path)
    if not candidates:
        return []
    jobs = dict(ExportRequest.objects.filter(
        status__in=[ExportRequest.Status.READY, *ExportRequest.ACTIVE]
    ).values_list("archive_name", "status"))
    removed = []
    for path in candidates:
        if path.name.startswith(".tmp-"):
            # ".tmp-<archive name>-<random>.part" (packaging.temp_prefix)
            owner = path.name[len(".tmp-"):].split(".zip-", 1)[0] + ".zip"
            keep = jobs.get(owner) in ExportRequest.ACTIVE
        else:
            keep = path.name in jobs
        if not keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        logger.info("exports: removed %d file(s) no job needs", len(removed))
    return removed


def exports_reconcile(*, redispatch_after: int | None = None, stale_after: int | None = None) -> int:
    """Re-send jobs stuck in queued (never sent, or sent long ago) and jobs whose packaging
    worker stopped reporting; returns how many were sent.

    Callers: the ``exports.reconcile`` task every minute (and tests with shorter limits). A job
    sent twice is harmless: the worker's claim lets only one packager through.
    """
    now = timezone.now()
    redispatch = now - dt.timedelta(seconds=settings.EXPORTS_REDISPATCH_AFTER if redispatch_after is None else redispatch_after)
    stale = now - dt.timedelta(seconds=settings.EXPORTS_STALE_AFTER if stale_after is None else stale_after)
    queued = ExportRequest.objects.filter(status=ExportRequest.Status.QUEUED)
    stuck = list(queued.filter(dispatched_at__isnull=True).values_list("pk", flat=True))
    stuck += list(queued.filter(dispatched_at__lte=redispatch).values_list("pk", flat=True))
    dead = ExportRequest.objects.filter(status=ExportRequest.Status.PACKAGING, heartbeat_at__lte=stale)
    for pk in dead.values_list("pk", flat=True):
        # Back to queued so the claim's "live worker" check lets the next delivery through.
        ExportRequest.objects.filter(pk=pk, status=ExportRequest.Status.PACKAGING, heartbeat_at__lte=stale).update(
            status=ExportRequest.Status.QUEUED, dispatched_at=None
        )
        stuck.append(pk)
    return sum(1 for pk in dict.fromkeys(stuck) if export_dispatch(export_id=pk))


# --- The privacy office's command ---------------------------------------------------------


def export_for_paper_request(*, actor: Actor, patient: Patient, studies: list[Study], deidentify: bool,
                             passphrase: str, out: Path) -> packaging.Result:
    """Package studies straight to ``out`` for a request received on paper (manage.py
    export_studies), with the same packaging as the Celery job.

    Callers: the management command, run by the privacy office on the server, with an officer
    ``actor`` narrowed to the patient (``actor.investigating(patient.pk)``). No password re-check:
    there is no browser session to re-check, and the shell on the server is the stronger
    credential. Writes one AccessEvent (export, actor privacy_office, purpose patient_request),
    committed only once the archive exists; an actor that may not reach ``patient`` is refused
    before anything is packaged.
    """
    if not studies:
        raise ValidationError("No studies to export.")
    if not actor.may_reach(patient.pk):
        raise PermissionDenied("This actor may not reach this patient's records.")
    if any(s.patient_id != patient.pk for s in studies):
        raise ValidationError("A study belongs to another patient.")
    out = out.resolve()
    tmp, result = packaging.build_archive(patient=patient, studies=studies, deidentify=deidentify,
                                          passphrase=passphrase, final_path=out)
    try:
        with transaction.atomic():
            access_log.record(
                actor=actor,
                patient=patient,
                study=studies[0] if len(studies) == 1 else None,
                action=AccessEvent.Action.EXPORT,
                purpose=AccessEvent.Purpose.PATIENT_REQUEST,
                source=AccessEvent.Source.PORTAL,
                details={"channel": "paper", "studies": len(studies), "deidentified": deidentify,
                         "sha256": result.sha256},
            )
            if result.copies:
                deidentified_copies_record(records=result.copies, export_ref=0, made_at=timezone.now())
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return result

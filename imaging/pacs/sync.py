"""The PACS sync: pulling the studies of patients with an activated account from the hospital
PACS over DICOMweb (see ``imaging.pacs`` for matching and restarting).

- ``pacs_sync``: callers are ``manage.py sync_pacs``, the periodic ``imaging.pacs_sync`` task
  and ``imaging.pacs_fetch_patient`` (a newly activated patient's history), each acting as
  ``Actor.system(IMPORTER_NAME)``. Retrieved files are imported through
  ``imaging.services.ingest.dicom_import``, audited there: one ``ingest`` event per study per
  run; a changed file under a known SOP Instance UID becomes an integrity conflict, never an
  overwrite.
- ``pacs_patient_fetch_enqueue``: caller is ``accounts.services.patient_account_activate``.
- ``pacs_sync_failed``: caller is the Celery tasks once their retries are used up; tells the
  administrators (no patient data in the mail).

What the sync reads from the database is in ``imaging.selectors`` (``pacs_sync_patients``,
``pacs_known_instances``), as are the reads for /healthz and the home page (``pacs_health``,
``pacs_fetch_progress``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from core.actor import Actor
from imaging import selectors, storage
from imaging.models import PacsInstance, PacsPatientSync, PacsSyncRun, Patient
from imaging.pacs.client import connect, pacs_configured
from imaging.pacs.errors import PacsError
from imaging.services.ingest import ImportStorageError, dicom_import

if TYPE_CHECKING:
    from imaging.pacs.client import Client

# The DICOMweb client, requests and pydicom (with numpy and Pillow, about 49 MB) are loaded by
# ``connect`` and ``parse`` when a sync runs: every Celery worker imports this module, and the
# export worker must stay under 100 MB (tests/exports/test_worker.py).

logger = logging.getLogger(__name__)

# Advisory lock namespace ("PACS" on a phone keypad); the second key is the patient's pk.
_LOCK_CLASS = 7227
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_SOP_UID = "00080018"
_PATIENT_ID = "00100020"
_ISSUER = "00100021"
_STUDY_INSTANCES = "00201208"


@dataclass
class SyncResult:
    patients: int = 0
    studies: int = 0
    fetched: int = 0
    imported: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0
    skipped_busy: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "patients", "studies", "fetched", "imported", "duplicate", "conflict", "rejected", "skipped_busy")}


def _value(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]).strip() if values else ""


@contextmanager
def _patient_lock(patient: Patient) -> Iterator[bool]:
    """Session-level advisory lock: released when the connection closes, so a killed sync
    never blocks the next one. Yields False when another sync holds this patient."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_CLASS, patient.pk])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, patient.pk])


def pacs_sync(*, actor: Actor, patient_ids: list[int] | None = None, recheck: bool = False) -> SyncResult:
    """Sync the studies of every patient with an activated account (or of ``patient_ids``),
    importing as ``actor`` (``Actor.system(IMPORTER_NAME)``: an import needs an actor that
    reaches every record).

    ``recheck`` retrieves every instance again (the import compares bytes), for a PACS whose
    changes do not show in its metadata. Raises ``PacsNotConfigured`` / ``PacsError`` when the
    PACS fails; what was imported before the failure stays, and the next run resumes.
    Writes one ``PacsSyncRun`` row per call (for /healthz).
    """
    api = connect()
    patients = selectors.pacs_sync_patients(actor=actor, patient_ids=patient_ids)
    run = PacsSyncRun.objects.create(patient=patients[0] if patient_ids and len(patients) == 1 else None)
    result = SyncResult()
    try:
        for patient in patients:
            with _patient_lock(patient) as got:
                if not got:
                    result.skipped_busy += 1
                    continue
                _sync_patient(actor, api, patient, result, recheck=recheck)
            result.patients += 1
    except Exception as exc:
        # A full storage stops the import with a sentence worth showing on /healthz as it is.
        message = str(exc) if isinstance(exc, PacsError | ImportStorageError) else f"Sync failed ({type(exc).__name__})."
        PacsSyncRun.objects.filter(pk=run.pk).update(
            status=PacsSyncRun.Status.FAILED, finished_at=timezone.now(), error=message[:300], **_counts(result))
        logger.warning("PACS sync failed: %s", message)
        raise
    error = "; ".join(result.problems)[:300]
    PacsSyncRun.objects.filter(pk=run.pk).update(
        status=PacsSyncRun.Status.OK, finished_at=timezone.now(), error=error, **_counts(result))
    if result.rejected or result.conflict:
        logger.warning("PACS sync: %s rejected, %s conflicts", result.rejected, result.conflict)
    return result


def _counts(result: SyncResult) -> dict[str, int]:
    return {"studies": result.studies, "imported": result.imported, "conflicts": result.conflict,
            "rejected": result.rejected}


def _find_studies(api: Client, patient: Patient) -> list[dict[str, Any]]:
    """QIDO-RS for the patient's studies, narrowed to the patient's issuer (see ``imaging.pacs``)."""
    if any(ch in patient.mrn for ch in "*?\\"):
        # QIDO treats * and ? as wildcards: such an ID could match other patients' studies.
        return []
    found = api.search_studies(patient.mrn)
    default_issuer = getattr(settings, "PACS_DEFAULT_ISSUER", "LOCAL")
    studies = []
    for item in found:
        issuer = _value(item, _ISSUER)
        if _value(item, _PATIENT_ID) != patient.mrn or not _value(item, _STUDY_UID):
            continue
        if issuer == patient.issuer or (not issuer and patient.issuer == default_issuer):
            studies.append(item)
    return sorted(studies, key=lambda s: _value(s, _STUDY_UID))


def _fingerprint(item: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _sync_patient(actor: Actor, api: Client, patient: Patient, result: SyncResult, *, recheck: bool) -> None:
    state, _ = PacsPatientSync.objects.get_or_create(patient=patient)
    state.status, state.last_error = PacsPatientSync.Status.RUNNING, ""
    state.save(update_fields=["status", "last_error", "updated_at"])
    try:
        studies = _find_studies(api, patient)
        state.studies_total, state.studies_done, state.instances_done = len(studies), 0, 0
        state.instances_total = sum(int(_value(s, _STUDY_INSTANCES) or 0) for s in studies)
        state.save(update_fields=["studies_total", "studies_done", "instances_total", "instances_done", "updated_at"])
        for study in studies:
            done = _sync_study(actor, api, patient, _value(study, _STUDY_UID), result, recheck=recheck)
            state.studies_done += 1
            state.instances_done += done
            state.instances_total = max(state.instances_total, state.instances_done)
            state.save(update_fields=["studies_done", "instances_done", "instances_total", "updated_at"])
            result.studies += 1
    except Exception as exc:
        state.status = PacsPatientSync.Status.FAILED
        state.last_error = (str(exc) if isinstance(exc, PacsError | ImportStorageError) else type(exc).__name__)[:300]
        state.save(update_fields=["status", "last_error", "updated_at"])
        raise
    state.status, state.last_synced_at = PacsPatientSync.Status.DONE, timezone.now()
    state.save(update_fields=["status", "last_synced_at", "updated_at"])


def _sync_study(
    actor: Actor, api: Client, patient: Patient, study_uid: str, result: SyncResult, *, recheck: bool
) -> int:
    """Fetch and import the study's new or changed instances; returns how many it has."""
    metadata = api.study_metadata(study_uid)
    wanted: dict[str, tuple[str, str]] = {}  # sop_uid -> (series_uid, fingerprint)
    for item in metadata:
        sop_uid, series_uid = _value(item, _SOP_UID), _value(item, _SERIES_UID)
        if sop_uid and series_uid:
            wanted[sop_uid] = (series_uid, _fingerprint(item))
    known = selectors.pacs_known_instances(actor=actor, sop_uids=list(wanted))
    todo = [uid for uid, (_, digest) in wanted.items() if recheck or known.get(uid) != digest]
    if not todo:
        return len(wanted)

    throttle = getattr(settings, "PACS_THROTTLE_MS", 0) / 1000
    # Downloads wait in a run folder of the store's own (locked, swept by the next import when
    # this process is gone), not a TemporaryDirectory that a killed sync left in /tmp for good.
    with storage.IncomingRun() as run, storage.unpack_folder(run) as folder:
        files: list[Path] = []
        for index, sop_uid in enumerate(todo):
            data = api.instance_bytes(study_uid, wanted[sop_uid][0], sop_uid)
            result.fetched += 1
            path = folder / f"{index:06d}.dcm"
            path.write_bytes(data)
            problem = _wrong_patient(path, patient)
            if problem:
                # Never attribute a file to this patient on the PACS index's word alone.
                path.unlink()
                result.rejected += 1
                result.problems.append(problem)
                continue
            files.append(path)
            if throttle:
                time.sleep(throttle)  # pacing requests to the PACS, not synchronisation
        summary = dicom_import(actor=actor, paths=files, issuer=patient.issuer) if files else None

    if summary is not None:
        now = timezone.now()
        for outcome in summary.files:
            setattr(result, outcome.outcome, getattr(result, outcome.outcome, 0) + 1)
            if outcome.outcome == "rejected" or outcome.sop_uid not in wanted:
                if outcome.reason:
                    result.problems.append(f"A file was not imported: {outcome.reason}"[:200])
                continue
            # Recorded only once the import has committed: a kill before this line means the
            # file is fetched again next time and found a duplicate, never imported twice.
            with transaction.atomic():
                PacsInstance.objects.update_or_create(
                    sop_uid=outcome.sop_uid,
                    defaults={"patient": patient, "study_uid": study_uid, "series_uid": wanted[outcome.sop_uid][0],
                              "metadata_sha256": wanted[outcome.sop_uid][1], "outcome": outcome.outcome,
                              "fetched_at": now},
                )
    return len(wanted)


def _wrong_patient(path: Path, patient: Patient) -> str | None:
    from imaging.dicom import parse

    identity = parse.patient_identity(path)
    if identity is None:
        return None  # an unreadable file is left to the import to reject with a reason
    patient_id, issuer = identity
    if patient_id != patient.mrn or (issuer and issuer != patient.issuer):
        return "The PACS sent a file of another patient for this patient's study; not imported."
    return None


def pacs_patient_fetch_enqueue(*, patient: Patient) -> bool:
    """Queue the background fetch of a newly activated patient's history (after commit).

    Caller: ``accounts.services.patient_account_activate``. Does nothing (returns False) when
    no PACS is configured. The home page shows the progress from the ``PacsPatientSync`` row.
    """
    if not pacs_configured():
        return False
    PacsPatientSync.objects.update_or_create(
        patient=patient, defaults={"status": PacsPatientSync.Status.PENDING, "last_error": ""})
    from imaging.tasks import pacs_fetch_patient

    patient_id = patient.pk
    transaction.on_commit(lambda: pacs_fetch_patient.delay(patient_id))
    return True


def pacs_sync_failed(*, error: str, patient_id: int | None = None) -> None:
    """A sync failed for good (retries used up): tell the administrators.

    Caller: the Celery tasks' final failure. The mail names no patient (only the internal
    record number of a single-patient fetch), per STYLE.md: no clinical detail in emails.
    """
    if patient_id is not None:
        PacsPatientSync.objects.filter(patient_id=patient_id).exclude(status=PacsPatientSync.Status.DONE).update(
            status=PacsPatientSync.Status.FAILED, last_error=error[:300])
    context = {"error": error[:300], "patient_id": patient_id, "url": settings.PACS_DICOMWEB_URL}
    mail_admins(
        "PACS sync failed",
        render_to_string("imaging/email/pacs_failed.txt", context),
        fail_silently=True,
    )
    logger.error("PACS sync failed after retries: %s", error)

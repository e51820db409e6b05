"""DICOM ingest: files, folders, ZIP archives and DICOMDIR media into Patient, Study, Series and
Instance rows and content-addressed storage.

``dicom_import``: callers are ``manage.py import_dicom``, ``imaging.demo`` and the PACS sync
(``imaging.pacs.sync``), each as ``Actor.system(IMPORTER_NAME)``. Audited: one
``AccessEvent(action="ingest", source="import")`` per study per run, in the study's transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction

from core import access_log
from core.actor import Actor
from imaging import storage
from imaging.models import Instance, Patient, PixelStatus, Series, Study
from imaging.services.integrity import conflict_alert_raise
from imaging.services.rendering import thumbnails_render_later

if TYPE_CHECKING:
    from imaging import sources
    from imaging.dicom import parse

# imaging.dicom (pydicom, numpy, Pillow: about 49 MB) is imported by the functions that parse or
# decode, not here: the PACS sync imports this module, and processes that never import need
# not load them.

logger = logging.getLogger(__name__)

# How the access log names an import (actor_type "system"); the importers pass
# ``Actor.system(IMPORTER_NAME)``, so a patient reads the same name whatever brought the files.
IMPORTER_NAME = "Lightbox import"
# Issuer of Patient ID used when neither --issuer nor the file names one. Overridable with a
# LIGHTBOX_DEFAULT_ISSUER setting; "LOCAL" marks IDs assigned by this hospital's own systems.
DEFAULT_ISSUER = "LOCAL"
PIXEL_ERROR_CHARS = Instance._meta.get_field("pixel_error").max_length


class ImportUsageError(Exception):
    """The command was called wrongly (a PATH that does not exist); nothing was imported."""


class ImportStorageError(Exception):
    """Storage could not take a file (full, over quota, an I/O error): the run stopped there.
    Studies committed before it are complete; nothing of the study being written, and nothing
    after it, was recorded. ``summary`` holds the outcomes known when it stopped."""

    def __init__(self, cause: storage.StorageWriteError, summary: ImportSummary) -> None:
        done = len(summary.studies)
        super().__init__(
            f"Import stopped. {cause} Nothing of that file's study was recorded"
            + (f"; the {done} stud{'y' if done == 1 else 'ies'} imported before it are complete" if done else "")
            + ". Free space on the storage (or repair it) and run the same import again: files already "
            "imported are reported as duplicates."
        )
        self.cause = cause
        self.summary = summary


@dataclass
class FileOutcome:
    path: str
    outcome: str  # imported | duplicate | conflict | rejected
    reason: str | None = None
    sop_uid: str | None = None
    study_uid: str | None = None
    # What was accepted although it is not right: a hash-like UID, pixels that cannot be shown.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "outcome": self.outcome}
        for key in ("reason", "sop_uid", "study_uid"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data["warnings"] = list(self.warnings)
        return data


@dataclass
class ImportSummary:
    files: list[FileOutcome] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)  # Study UIDs that received new instances

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def imported(self) -> int:
        return self.count("imported")

    @property
    def duplicate(self) -> int:
        return self.count("duplicate")

    @property
    def conflict(self) -> int:
        return self.count("conflict")

    @property
    def rejected(self) -> int:
        return self.count("rejected")

    @property
    def warnings(self) -> int:
        """Files that were not rejected but carry at least one warning."""
        return sum(1 for f in self.files if f.warnings)

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract of ``import_dicom --json`` (DESIGN.md "Contracts"). ``warnings``
        (a count of files, and a list of sentences per file) was added after the other keys."""
        return {
            "imported": self.imported,
            "duplicate": self.duplicate,
            "conflict": self.conflict,
            "rejected": self.rejected,
            "warnings": self.warnings,
            "files": [f.as_dict() for f in self.files],
        }


@dataclass
class _Staged:
    slot: int
    label: str
    path: Path
    parsed: parse.ParsedInstance
    digest: storage.Digest
    pixel_status: str = PixelStatus.OK
    pixel_error: str = ""
    incoming: storage.Incoming | None = None  # the copy made while hashing (pass 1)
    row_valid: bool = False  # pass 1 validated the Instance row with ``checked_status``
    checked_status: tuple[str, str] = ("", "")

    @property
    def warnings(self) -> list[str]:
        notes = list(self.parsed.warnings)
        if self.pixel_status == PixelStatus.UNDECODABLE:
            notes.append(f"Stored, but its image cannot be shown: {self.pixel_error}")
        return notes


def dicom_import(*, actor: Actor, paths: list[str | Path], issuer: str | None = None) -> ImportSummary:
    """Import DICOM files, folders (recursively), ZIP archives and DICOMDIR media.

    Who may call: a command or task acting as ``Actor.system(IMPORTER_NAME)`` (an import creates
    and extends patients' records, so only an actor that reaches every record may run one;
    anyone else raises ``PermissionDenied`` before anything is read).

    Every file gets an outcome; a bad file is rejected with a reason and never stops the run.
    Patients are matched or created by (issuer, PatientID), with the issuer taken from
    ``issuer``, else the file's Issuer of Patient ID, else ``DEFAULT_ISSUER``. Each study is
    written in its own transaction together with its one ``ingest`` access event (source
    ``import``, purpose ``operations``), recorded as ``actor``.
    Raises ``ImportUsageError`` before doing anything if a path does not exist, and
    ``ImportStorageError`` when storage cannot take a file (full, over quota, an I/O error): the
    run stops at once, no row of the study being written is committed, and what this run copied
    but did not commit is removed.

    Files wait in this run's own ``.incoming`` folder (``storage.IncomingRun``) between pass 1
    and their study's commit, and ZIP archives are unpacked inside it; a killed run's folder is
    removed by the next import's sweep.
    """
    if not actor.all_patients:
        raise PermissionDenied("Only the hospital's import may add files to patients' records.")
    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise ImportUsageError(f"No such file or directory: {', '.join(missing)}")
    issuer = (issuer or "").strip()[:64] or None

    summary = ImportSummary()
    # Closing the run removes the copies that were not put in place (duplicates, rejections,
    # failed studies, a run stopped by a storage error).
    try:
        # ZIP members are unpacked inside the run's own folder, so a killed import's are swept
        # with it (storage.unpack_folder).
        with storage.IncomingRun() as run, storage.unpack_folder(run) as unpacked:
            staged = _stage_all(roots, unpacked, summary, run)
            _import_staged(actor, staged, issuer, summary)
    except storage.StorageWriteError as exc:  # the run's own folder too, on a disk already full
        logger.error("import stopped: %s", exc)
        raise ImportStorageError(exc, summary) from exc
    return summary


def _import_staged(actor: Actor, staged: list[_Staged], issuer: str | None, summary: ImportSummary) -> None:
    """Pass 2: each study in one transaction (its rows in bulk and its one access event)."""
    by_study: OrderedDict[str, list[_Staged]] = OrderedDict()
    for item in staged:
        by_study.setdefault(item.parsed.study_uid, []).append(item)
    for study_uid, items in by_study.items():
        try:
            with transaction.atomic():
                outcomes, imported = _import_study(actor, items, issuer)
                transaction.on_commit(lambda uid=study_uid: thumbnails_render_later(uid))  # thumbnails before the first page
        except (DatabaseError, ValidationError, OSError) as exc:
            # A study-level failure (a race with another import, a bad audit value) rejects
            # that study's files and the run goes on.
            logger.exception("import of study %s failed", study_uid)
            outcomes = [
                (i.slot, FileOutcome(i.label, "rejected", f"Not imported ({type(exc).__name__}); retry the import.",
                                     i.parsed.sop_uid, study_uid))
                for i in items
            ]
            imported = 0
        for slot, outcome in outcomes:
            summary.files[slot] = outcome
        if imported:
            summary.studies.append(study_uid)
            _check_pixel_text_later(study_uid)


def _check_pixel_text_later(study_uid: str) -> None:
    """Queue OCR of a newly imported study's images (``imaging.pixel_text_check_study``), so
    "What this scan reveals" can say what the pixels show and a de-identified export finds the
    results cached. Sent by name: imaging.tasks imports this module. A broker outage costs
    nothing but time: exports read uncached images themselves."""
    from celery import current_app

    study_id = Study.objects.filter(study_uid=study_uid).values_list("pk", flat=True).first()
    if study_id is None:
        return
    try:
        current_app.send_task("imaging.pixel_text_check_study", args=[study_id])
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is down
        logger.warning("could not queue the pixel text check of study %s", study_id)


def _stage_all(roots: list[Path], workdir: Path, summary: ImportSummary, run: storage.IncomingRun) -> list[_Staged]:
    """Pass 1: find every file; parse, copy into storage while hashing and check the pixels of
    each (``staging.prepare``, in worker processes for big runs). Outcomes of rejected files are
    final here; the others get a slot that the per-study pass fills in, so the report keeps file
    order: the order in which the files were met, a ZIP's members and a DICOMDIR's references
    in the place of the archive or index, each file once (where it was first met)."""
    from imaging import sources
    from imaging.services import staging

    Key = tuple[int, ...]
    results: dict[Key, FileOutcome | _Staged] = {}
    first_key: dict[Path, Key] = {}  # each real file once, under the first place it was met
    found: list[sources.Candidate | sources.Refused] = []
    for root in roots:
        if root.is_dir():
            found.extend(sources.walk(root))
        else:
            found.append(sources.Candidate(sources.printable(str(root)), root))
    pending: list[tuple[Key, sources.Candidate | sources.Refused]] = [((i,), item) for i, item in enumerate(found)]

    while pending:
        to_prepare: list[tuple[Key, sources.Candidate]] = []
        index = 0
        while index < len(pending):
            key, item = pending[index]
            index += 1
            if isinstance(item, sources.Refused):
                results[key] = FileOutcome(item.label, "rejected", item.reason)
                continue
            if item.archive_names is None:
                real = item.path.resolve()
                earlier = first_key.get(real)
                if earlier is not None:
                    if earlier > key and earlier in results:
                        # Met earlier in file order (a DICOMDIR's reference to a file also walked):
                        # the file's one outcome moves there, under that name.
                        results[key] = _relabeled(results.pop(earlier), item.label)
                        first_key[real] = key
                    continue
                first_key[real] = key
                if sources.is_zip(item.path):
                    members = sources.open_archive(item.path, item.label, workdir)
                    pending[index:index] = [((*key, j), m) for j, m in enumerate(members)]
                    continue
            to_prepare.append((key, item))
        pending = []
        prepared_all = staging.prepare_all([c.path for _, c in to_prepare], run)
        with _labelled({str(c.path): c.label for _, c in to_prepare}):
            prepared_list = list(prepared_all)
        for (key, item), prepared in zip(to_prepare, prepared_list, strict=True):
            if prepared.reason is not None:
                results[key] = FileOutcome(item.label, "rejected", prepared.reason)
            elif prepared.referenced is not None:
                # The index itself is not an instance: its referenced files are imported instead.
                refs = sources.resolve_dicomdir(item, prepared.referenced)
                pending.extend(((*key, j), ref) for j, ref in enumerate(refs))
            else:
                assert prepared.parsed is not None and prepared.incoming is not None
                results[key] = _Staged(-1, item.label, item.path, prepared.parsed, prepared.incoming.digest,
                                       prepared.pixel_status, prepared.pixel_error, prepared.incoming,
                                       prepared.row_valid, (prepared.pixel_status, prepared.pixel_error))

    staged: list[_Staged] = []
    for key in sorted(results):
        result = results[key]
        if isinstance(result, FileOutcome):
            summary.files.append(result)
            continue
        summary.files.append(FileOutcome(result.label, "pending", sop_uid=result.parsed.sop_uid,
                                         study_uid=result.parsed.study_uid))
        result.slot = len(summary.files) - 1
        staged.append(result)
    return staged


@contextlib.contextmanager
def _labelled(labels: dict[str, str]) -> Iterator[None]:
    """A storage error names the file as the report does (a ZIP member by its place in the
    archive, not the temporary copy)."""
    try:
        yield
    except storage.StorageWriteError as exc:
        exc.source = labels.get(exc.source, exc.source)
        raise


def _relabeled(result: FileOutcome | _Staged, label: str) -> FileOutcome | _Staged:
    if isinstance(result, FileOutcome):
        result.path = label
    else:
        result.label = label
    return result


def _issuer_for(parsed: parse.ParsedInstance, override: str | None) -> str:
    return override or parsed.issuer or getattr(settings, "LIGHTBOX_DEFAULT_ISSUER", DEFAULT_ISSUER)


def _import_study(
    actor: Actor, items: list[_Staged], issuer_override: str | None
) -> tuple[list[tuple[int, FileOutcome]], int]:
    """Pass 2 for one study, inside its transaction: a handful of statements for the whole
    study (look-ups of its SOP Instance UIDs, series and known hashes, one bulk insert), not a
    few per file. Every row is validated before anything is written, so a file with an invalid
    value is rejected alone and nothing of it is written. Returns outcomes and the number
    imported."""
    first = items[0].parsed
    identity = (_issuer_for(first, issuer_override), first.patient_id)
    _lock_study_uid(first.study_uid)
    study = Study.objects.select_for_update().select_related("patient").filter(study_uid=first.study_uid).first()
    if study is not None and (study.patient.issuer, study.patient.mrn) != identity:
        reason = "This Study Instance UID already belongs to another patient; not imported."
        return [(i.slot, _outcome(i, "rejected", reason)) for i in items], 0

    existing = {i.sop_uid: i for i in Instance.objects.filter(sop_uid__in={i.parsed.sop_uid for i in items})}
    known = dict(
        (sha, (status, error)) for sha, status, error in Instance.objects.filter(
            sha256__in={i.digest.sha256 for i in items if i.parsed.is_image}
        ).values_list("sha256", "pixel_status", "pixel_error")
    )
    if study is None and any(i.parsed.sop_uid not in existing for i in items):
        study = _create_study(first, _patient(identity, first))
    series_by_uid = {s.series_uid: s for s in Series.objects.filter(series_uid__in={i.parsed.series_uid for i in items})}

    outcomes: list[tuple[int, FileOutcome]] = []
    new_rows: list[tuple[_Staged, Instance]] = []
    later: list[_Staged] = []  # a second file with a SOP Instance UID already new in this run
    batch_sops: set[str] = set()
    conflicts = 0
    for item in items:
        p = item.parsed
        if (_issuer_for(p, issuer_override), p.patient_id) != identity:
            outcomes.append((item.slot, _outcome(item, "rejected", "Patient ID differs from the rest of this study.")))
            continue
        if p.sop_uid in batch_sops:
            later.append(item)
            continue
        old = existing.get(p.sop_uid)
        if old is not None:
            outcome = _existing_outcome(item, old)
            conflicts += outcome.outcome == "conflict"
            outcomes.append((item.slot, outcome))
            continue
        assert study is not None  # created above whenever a file of the study is new
        if item.parsed.is_image and item.digest.sha256 in known:
            item.pixel_status, item.pixel_error = known[item.digest.sha256]
        try:
            instance = _new_instance(item, study, series_by_uid)
        except ValidationError as exc:
            outcomes.append((item.slot, _outcome(item, "rejected", f"Invalid header value: {_messages(exc)}")))
            continue
        if isinstance(instance, FileOutcome):
            outcomes.append((item.slot, instance))
            continue
        batch_sops.add(p.sop_uid)
        new_rows.append((item, instance))

    # Every file synced and in place before any row names it (storage.commit_incoming_all); a
    # StorageWriteError leaves this transaction, so nothing of the study is recorded.
    with _labelled({str(item.path): item.label for item, _ in new_rows}):
        names = storage.commit_incoming_all(
            [(item.incoming or storage.Incoming(item.digest, None), item.path) for item, _ in new_rows],
            synced=True,  # staging.prepare_all synced every copy it returned
        )
    stored: list[Instance] = []
    for (item, instance), name in zip(new_rows, names, strict=True):
        instance.storage_path = name
        stored.append(instance)
        outcomes.append((item.slot, _outcome(item, "imported")))
    Instance.objects.bulk_create(stored, batch_size=500)

    if later:
        existing = {i.sop_uid: i for i in Instance.objects.filter(sop_uid__in={i.parsed.sop_uid for i in later})}
        for item in later:
            first_copy = existing.get(item.parsed.sop_uid)
            if first_copy is None:  # the first file with this UID was rejected
                outcomes.append((item.slot, _outcome(item, "rejected", "Not imported with the first file of this SOP Instance UID; retry.")))
                continue
            outcome = _existing_outcome(item, first_copy)
            conflicts += outcome.outcome == "conflict"
            outcomes.append((item.slot, outcome))

    if study is not None and stored:
        _refresh_study(study, [i.parsed for i in items])
    if study is not None and (stored or conflicts):
        details: dict[str, Any] = {"instances": len(stored)}
        if conflicts:
            details["conflicts"] = conflicts
        access_log.record(
            actor=actor, patient=study.patient, study=study, action="ingest", purpose="operations",
            source="import", details=details,
        )
    return outcomes, len(stored)


def _lock_study_uid(study_uid: str) -> None:
    """Serialise imports of the same study (two runs over the same files, a PACS sync beside a
    command): the second waits for the first's transaction and then finds its rows, so each
    file is stored once and neither run fails on a unique constraint. A transaction-scoped
    advisory lock, because the Study row may not exist yet to be locked. SQLite serialises
    writers by itself."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"lightbox-import:{study_uid}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _existing_outcome(item: _Staged, existing: Instance) -> FileOutcome:
    if existing.sha256 == item.digest.sha256:
        return _outcome(item, "duplicate")
    conflict_alert_raise(existing, found=item.path, digest=item.digest, source=item.label)
    reason = ("A different file with this SOP Instance UID is already stored; "
              "the original was kept and an integrity alert raised.")
    return _outcome(item, "conflict", reason)


def _new_instance(item: _Staged, study: Study, series_by_uid: dict[str, Series]) -> Instance | FileOutcome:
    """The unsaved Instance row for a new file (its series created if new), validated; or the
    file's rejection."""
    p = item.parsed
    series = series_by_uid.get(p.series_uid)
    new_series = None
    if series is None:
        new_series = Series(study=study, series_uid=p.series_uid, modality=p.modality, number=p.series_number,
                            description=p.series_description, body_part=p.body_part)
        new_series.full_clean(validate_unique=False, exclude=["study"])
    elif series.study_id != study.pk:
        return _outcome(item, "rejected", "This Series Instance UID belongs to another study.")
    from imaging.services import staging

    instance = staging.instance_row(p, item.digest, item.pixel_status, item.pixel_error)
    if not (item.row_valid and (item.pixel_status, item.pixel_error) == item.checked_status):
        # Validated here unless the worker already did with these values (staging.prepare).
        # Uniqueness of sop_uid was checked above and is enforced by the database; the series row
        # is read or written here (re-validating the foreign key would cost a query per file).
        instance.full_clean(validate_unique=False, exclude=["series"])
    if new_series is not None:
        # Only once the file's own row is valid: a rejected file leaves no series behind.
        new_series.save()
        series = series_by_uid[p.series_uid] = new_series
    instance.series = series
    return instance


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())[:200]
    return " ".join(exc.messages)[:200]


def _outcome(item: _Staged, outcome: str, reason: str | None = None) -> FileOutcome:
    # A rejected file's reason is all there is to say; the others keep what was noticed on the way.
    warnings = [] if outcome == "rejected" else item.warnings
    return FileOutcome(item.label, outcome, reason, item.parsed.sop_uid, item.parsed.study_uid, warnings)


def _patient(identity: tuple[str, str], p: parse.ParsedInstance) -> Patient:
    issuer, mrn = identity
    # The hospital's record wins: an existing patient's name and birth date are not changed by
    # what a file says (the header report shows the file's own values).
    patient, _ = Patient.objects.get_or_create(
        issuer=issuer, mrn=mrn, defaults={"name": p.patient_name or mrn, "birth_date": p.birth_date}
    )
    return patient


def _create_study(p: parse.ParsedInstance, patient: Patient) -> Study:
    study = Study(
        patient=patient, study_uid=p.study_uid, study_date=p.study_date, study_time=p.study_time,
        description=p.study_description, accession=p.accession, institution=p.institution,
        referring_physician=p.referring_physician,
    )
    study.full_clean(validate_unique=False)
    study.save()
    return study


def _refresh_study(study: Study, parsed: list[parse.ParsedInstance]) -> None:
    """Fill blanks from the new files and recompute the modality list."""
    changed = []
    for attr, value in (
        ("description", next((p.study_description for p in parsed if p.study_description), "")),
        ("accession", next((p.accession for p in parsed if p.accession), "")),
        ("institution", next((p.institution for p in parsed if p.institution), "")),
        ("referring_physician", next((p.referring_physician for p in parsed if p.referring_physician), "")),
        ("study_date", next((p.study_date for p in parsed if p.study_date), None)),
        ("study_time", next((p.study_time for p in parsed if p.study_time), None)),
    ):
        if value and not getattr(study, attr):
            setattr(study, attr, value)
            changed.append(attr)
    modalities = sorted({m for m in study.series.values_list("modality", flat=True) if m})
    joined = ",".join(modalities)[:64]
    if joined != study.modalities:
        study.modalities = joined
        changed.append("modalities")
    if changed:
        study.save(update_fields=[*changed, "updated_at"])

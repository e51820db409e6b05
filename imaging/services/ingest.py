"""DICOM ingest: files, folders, ZIP archives and DICOMDIR media into Patient, Study, Series and
Instance rows and content-addressed storage.

``dicom_import``: callers are ``manage.py import_dicom``, ``imaging.demo`` and the PACS sync
(``imaging.pacs.sync``), each as ``Actor.system(IMPORTER_NAME)``. Audited: one
``AccessEvent(action="ingest", source="import")`` per study per run, in the study's transaction.
"""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, transaction

from core import access_log
from core.actor import Actor
from imaging import storage
from imaging.models import Instance, Patient, PixelStatus, Series, Study
from imaging.services.integrity import conflict_alert_raise

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
    Raises ``ImportUsageError`` before doing anything if a path does not exist.
    """
    if not actor.all_patients:
        raise PermissionDenied("Only the hospital's import may add files to patients' records.")
    roots = [Path(p) for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise ImportUsageError(f"No such file or directory: {', '.join(missing)}")
    issuer = (issuer or "").strip()[:64] or None

    summary = ImportSummary()
    with tempfile.TemporaryDirectory(prefix="lightbox-import-") as tmp:
        staged = _stage_all(roots, Path(tmp), summary)
        by_study: OrderedDict[str, list[_Staged]] = OrderedDict()
        for item in staged:
            by_study.setdefault(item.parsed.study_uid, []).append(item)
        for study_uid, items in by_study.items():
            try:
                with transaction.atomic():
                    outcomes, imported = _import_study(actor, items, issuer)
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
    return summary


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


def _stage_all(roots: list[Path], workdir: Path, summary: ImportSummary) -> list[_Staged]:
    """Pass 1: find, parse and hash every file. Outcomes of rejected files are final here;
    the others get a slot that the per-study pass fills in, so the report keeps file order."""
    from imaging import sources
    from imaging.dicom import parse

    staged: list[_Staged] = []
    seen: set[Path] = set()
    pending: list[sources.Candidate | sources.Refused] = []
    for root in roots:
        if root.is_dir():
            pending.extend(sources.walk(root))
        else:
            pending.append(sources.Candidate(sources.printable(str(root)), root))

    def refuse(label: str, reason: str) -> None:
        summary.files.append(FileOutcome(label, "rejected", reason))

    index = 0
    while index < len(pending):
        item = pending[index]
        index += 1
        if isinstance(item, sources.Refused):
            refuse(item.label, item.reason)
            continue
        if item.archive_names is None:
            real = item.path.resolve()
            if real in seen:
                continue
            seen.add(real)
            if sources.is_zip(item.path):
                pending[index:index] = list(sources.open_archive(item.path, item.label, workdir))
                continue
        try:
            parsed = parse.parse_file(item.path)
        except parse.DicomRejected as exc:
            refuse(item.label, exc.reason)
            continue
        if isinstance(parsed, parse.DicomDirIndex):
            # The index itself is not an instance: its referenced files are imported instead.
            pending[index:index] = list(sources.resolve_dicomdir(item, parsed.referenced))
            continue
        try:
            digest = storage.hash_path(item.path)
        except OSError as exc:
            refuse(item.label, f"Cannot read the file ({exc.strerror or exc}).")
            continue
        status, error = _pixel_check(item.path, parsed, digest)
        summary.files.append(FileOutcome(item.label, "pending", sop_uid=parsed.sop_uid, study_uid=parsed.study_uid))
        staged.append(_Staged(len(summary.files) - 1, item.label, item.path, parsed, digest, status, error))
    return staged


def _pixel_check(path: Path, parsed: parse.ParsedInstance, digest: storage.Digest) -> tuple[str, str]:
    """(pixel_status, pixel_error) for a staged file: "none" without pixel data, else whether its
    first frame decodes. Done here, before any transaction, because decoding can take a while;
    a file whose bytes are already stored keeps the status found when it was first imported."""
    if not parsed.is_image:
        return PixelStatus.NONE, ""
    known = Instance.objects.filter(sha256=digest.sha256).values_list("pixel_status", "pixel_error").first()
    if known is not None:
        return known
    from imaging.dicom import render

    problem = render.decode_problem(path)
    if problem is None:
        return PixelStatus.OK, ""
    return PixelStatus.UNDECODABLE, problem[:PIXEL_ERROR_CHARS]


def _issuer_for(parsed: parse.ParsedInstance, override: str | None) -> str:
    return override or parsed.issuer or getattr(settings, "LIGHTBOX_DEFAULT_ISSUER", DEFAULT_ISSUER)


def _import_study(
    actor: Actor, items: list[_Staged], issuer_override: str | None
) -> tuple[list[tuple[int, FileOutcome]], int]:
    """Pass 2 for one study, inside its transaction. Returns outcomes and the number imported."""
    first = items[0].parsed
    identity = (_issuer_for(first, issuer_override), first.patient_id)
    study = Study.objects.select_for_update().select_related("patient").filter(study_uid=first.study_uid).first()
    if study is not None and (study.patient.issuer, study.patient.mrn) != identity:
        reason = "This Study Instance UID already belongs to another patient; not imported."
        return [(i.slot, _outcome(i, "rejected", reason)) for i in items], 0

    outcomes: list[tuple[int, FileOutcome]] = []
    imported_rows: list[Instance] = []
    conflicts = 0
    series_cache: dict[str, Series] = {}
    if study is None and any(not Instance.objects.filter(sop_uid=i.parsed.sop_uid).exists() for i in items):
        study = _create_study(first, _patient(identity, first))
    for item in items:
        p = item.parsed
        if (_issuer_for(p, issuer_override), p.patient_id) != identity:
            outcomes.append((item.slot, _outcome(item, "rejected", "Patient ID differs from the rest of this study.")))
            continue
        try:
            # A savepoint per file: one file's invalid value rejects that file, not the study.
            with transaction.atomic():
                outcome, instance = _import_one(item, study, series_cache)
        except ValidationError as exc:
            outcome, instance = _outcome(item, "rejected", f"Invalid header value: {_messages(exc)}"), None
        except OSError as exc:
            logger.exception("storing %s failed", p.sop_uid)
            outcome, instance = _outcome(item, "rejected", f"Storage error ({exc.strerror or type(exc).__name__}); retry."), None
        if outcome.outcome == "conflict":
            conflicts += 1
        if instance is not None:
            imported_rows.append(instance)
        outcomes.append((item.slot, outcome))

    if study is not None and imported_rows:
        _refresh_study(study, [i.parsed for i in items])
    if study is not None and (imported_rows or conflicts):
        details: dict[str, Any] = {"instances": len(imported_rows)}
        if conflicts:
            details["conflicts"] = conflicts
        access_log.record(
            actor=actor, patient=study.patient, study=study, action="ingest", purpose="operations",
            source="import", details=details,
        )
    return outcomes, len(imported_rows)


def _import_one(item: _Staged, study: Study | None, series_cache: dict[str, Series]) -> tuple[FileOutcome, Instance | None]:
    p = item.parsed
    existing = Instance.objects.filter(sop_uid=p.sop_uid).first()
    if existing is not None:
        if existing.sha256 == item.digest.sha256:
            return _outcome(item, "duplicate"), None
        conflict_alert_raise(existing, found=item.path, digest=item.digest, source=item.label)
        reason = ("A different file with this SOP Instance UID is already stored; "
                  "the original was kept and an integrity alert raised.")
        return _outcome(item, "conflict", reason), None
    assert study is not None  # created above whenever a file of the study is new
    series = series_cache.get(p.series_uid) or Series.objects.filter(series_uid=p.series_uid).first()
    if series is None:
        series = Series(study=study, series_uid=p.series_uid, modality=p.modality, number=p.series_number,
                        description=p.series_description, body_part=p.body_part)
        series.full_clean(validate_unique=False, exclude=["study"])
        series.save()
    elif series.study_id != study.pk:
        return _outcome(item, "rejected", "This Series Instance UID belongs to another study."), None
    name = storage.store_file(item.path, item.digest)
    instance = Instance(
        series=series, sop_uid=p.sop_uid, sop_class=p.sop_class, transfer_syntax=p.transfer_syntax,
        number=p.instance_number, frames=p.frames, rows=p.rows, columns=p.columns, size=item.digest.size,
        sha256=item.digest.sha256, storage_path=name, meta=p.viewer,
        pixel_status=item.pixel_status, pixel_error=item.pixel_error,
    )
    # Uniqueness of sop_uid was checked above and is enforced by the database; the series row
    # was just read or written (re-validating the foreign key would cost a query per file).
    instance.full_clean(validate_unique=False, exclude=["series"])
    instance.save()
    series_cache[p.series_uid] = series
    return _outcome(item, "imported"), instance


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

"""Writes for imaging: DICOM ingest, cached rendering, and the integrity re-check.

- ``dicom_import``: callers are ``manage.py import_dicom``, ``imaging.demo`` and (later) the
  PACS sync. Audited: one ``AccessEvent(action="ingest")`` per study per run.
- ``render_frame`` / ``render_thumbnail`` / ``viewer_metadata``: callers are the viewer and
  study views, which have already checked the patient and recorded their one view event;
  rendering a frame is not audited per frame (DESIGN.md flow 2).
- ``instances_verify``: callers are the nightly Celery beat task and a privacy officer's
  re-check. Not audited as an access (it reads bytes, not patient data); findings become
  ``IntegrityAlert`` rows.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import record_access
from imaging import storage
from imaging.errors import FORMATS, RenderError
from imaging.models import Instance, IntegrityAlert, Patient, PixelStatus, Series, Study

if TYPE_CHECKING:
    from imaging import sources
    from imaging.dicom import parse

# imaging.dicom (pydicom, numpy, Pillow: about 49 MB) is imported by the functions that parse or
# decode, not here: every process loads this module, and the export worker, which needs
# neither, must stay under 100 MB (tests/exports/test_worker.py).

logger = logging.getLogger(__name__)

__all__ = [
    "FileOutcome",
    "ImportSummary",
    "ImportUsageError",
    "RenderError",
    "VerifyResult",
    "dicom_import",
    "instances_check_pixels",
    "instances_verify",
    "render_frame",
    "render_thumbnail",
    "series_slices",
    "viewer_metadata",
]

# Issuer of Patient ID used when neither --issuer nor the file names one. Overridable with a
# LIGHTBOX_DEFAULT_ISSUER setting; "LOCAL" marks IDs assigned by this hospital's own systems.
DEFAULT_ISSUER = "LOCAL"
THUMBNAIL_SIZE = 160
PIXEL_ERROR_CHARS = Instance._meta.get_field("pixel_error").max_length


# --- Ingest --------------------------------------------------------------------------------


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


def dicom_import(*, paths: list[str | Path], issuer: str | None = None) -> ImportSummary:
    """Import DICOM files, folders (recursively), ZIP archives and DICOMDIR media.

    Every file gets an outcome; a bad file is rejected with a reason and never stops the run.
    Patients are matched or created by (issuer, PatientID), with the issuer taken from
    ``issuer``, else the file's Issuer of Patient ID, else ``DEFAULT_ISSUER``. Each study is
    written in its own transaction together with its one ``ingest`` AccessEvent.
    Raises ``ImportUsageError`` before doing anything if a path does not exist.
    """
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
                    outcomes, imported = _import_study(items, issuer)
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
    from imaging import sources
    from imaging.dicom import parse

    """Pass 1: find, parse and hash every file. Outcomes of rejected files are final here;
    the others get a slot that the per-study pass fills in, so the report keeps file order."""
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


def _import_study(items: list[_Staged], issuer_override: str | None) -> tuple[list[tuple[int, FileOutcome]], int]:
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
        record_access(
            patient=study.patient, study=study, action="ingest", purpose="operations", actor_type="system",
            actor_name="Lightbox import", organization=getattr(settings, "HOSPITAL_NAME", ""),
            source="import", details=details,
        )
    return outcomes, len(imported_rows)


def _import_one(item: _Staged, study: Study | None, series_cache: dict[str, Series]) -> tuple[FileOutcome, Instance | None]:
    p = item.parsed
    existing = Instance.objects.filter(sop_uid=p.sop_uid).first()
    if existing is not None:
        if existing.sha256 == item.digest.sha256:
            return _outcome(item, "duplicate"), None
        _record_conflict(existing, item)
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


def _record_conflict(existing: Instance, item: _Staged) -> None:
    # The differing file is kept as evidence under its own content address; the original row
    # and file are never touched.
    found_path = storage.store_file(item.path, item.digest)
    IntegrityAlert.objects.get_or_create(
        instance=existing, kind=IntegrityAlert.Kind.CONFLICT, found_sha256=item.digest.sha256, resolved_at=None,
        defaults={
            "expected_sha256": existing.sha256,
            "details": {"source": item.label[:500], "found_size": item.digest.size, "found_storage_path": found_path},
        },
    )


# --- Rendering ----------------------------------------------------------------------------


def _check_window(center: float | None, width: float | None) -> None:
    if (center is None) != (width is None):
        raise RenderError("Give both window center and width, or neither.")
    if center is not None and width is not None:
        if not (math.isfinite(center) and math.isfinite(width)) or width < 1 or abs(center) > 1e7 or width > 1e7:
            raise RenderError("Window values are out of range.")


def _render_name(sha256: str, stem: str, fmt: str) -> str:
    return f"renders/{sha256[:2]}/{sha256[2:4]}/{sha256}/{stem}.{fmt}"


def _cached_or_render(name: str, instance: Instance, **kwargs: Any) -> bytes:
    if instance.pixel_status == PixelStatus.UNDECODABLE:
        # Found at ingest: say why without decoding the same broken data again.
        raise RenderError(instance.pixel_error or "This image cannot be shown.")
    cache = storage.render_storage()
    try:
        with cache.open(name, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        pass
    if not instance.is_image:
        raise RenderError("This object has no image to show.")
    try:
        fh = storage.open_stored(instance.storage_path)
    except FileNotFoundError as exc:
        raise RenderError("The stored file is missing.") from exc
    from imaging.dicom import render

    with fh:
        data = render.render(fh, **kwargs)
    cache.save(name, ContentFile(data))
    return data


def render_frame(
    instance: Instance, *, frame: int = 0, center: float | None = None, width: float | None = None, fmt: str = "png"
) -> bytes:
    """An 8-bit PNG/WebP of one frame at a window (the file's default when none is given).

    Cached in the renders storage by (file hash, frame, window, format): each is decoded once.
    The caller has checked that the user may see ``instance`` and audits the view, not each
    frame. Raises ``RenderError`` (with ``reason``) for bad arguments or undecodable data.
    """
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    _check_window(center, width)
    if not isinstance(frame, int) or not 0 <= frame < max(instance.frames, 1):
        raise RenderError(f"Frame {frame} does not exist (the image has {instance.frames}).")
    window = "auto" if center is None else f"c{center:g}_w{width:g}"
    name = _render_name(instance.sha256, f"f{frame}_{window}", fmt)
    return _cached_or_render(name, instance, frame=frame, center=center, width=width, fmt=fmt)


def _middle_image(series: Series) -> Instance | None:
    """The middle of the images that can be shown; else an undecodable one (whose render says why)."""
    images = [i for i in _ordered(series) if i.is_image]
    shown = [i for i in images if i.pixel_status != PixelStatus.UNDECODABLE] or images
    return shown[len(shown) // 2] if shown else None


def render_thumbnail(series_or_instance: Series | Instance, *, size: int = THUMBNAIL_SIZE, fmt: str = "png") -> bytes:
    """A small image (``size`` px square at most) of the middle slice of a series, or of the
    middle frame of an instance, at the file's default window. Cached like ``render_frame``."""
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    if not 16 <= size <= 1024:
        raise RenderError("Thumbnail size must be between 16 and 1024 pixels.")
    if isinstance(series_or_instance, Series):
        instance = _middle_image(series_or_instance)
        if instance is None:
            raise RenderError("This series has no images.")
    else:
        instance = series_or_instance
    frame = max(instance.frames, 1) // 2 if instance.frames > 1 else 0
    name = _render_name(instance.sha256, f"thumb_f{frame}_{size}", fmt)
    return _cached_or_render(name, instance, frame=frame, fmt=fmt, max_size=size)


def viewer_metadata(instance: Instance) -> dict[str, Any]:
    """What the viewer needs for one instance: frames, size, default window, rescale (for HU
    readouts), pixel spacing and slice position. From the row; from the file for rows imported
    before the metadata was stored."""
    meta = instance.meta or {}
    if not meta and instance.is_image:
        from imaging.dicom import render

        try:
            with storage.open_stored(instance.storage_path) as fh:
                meta = render.header_viewer_info(fh)
        except (FileNotFoundError, RenderError):
            meta = {}
    center, width = meta.get("window_center"), meta.get("window_width")
    return {
        "sop_uid": instance.sop_uid,
        "number": instance.number,
        "is_image": instance.is_image,
        "sop_class": instance.sop_class,
        "sop_class_name": meta.get("sop_class_name", ""),
        "transfer_syntax": instance.transfer_syntax,
        "frames": instance.frames,
        "rows": instance.rows,
        "columns": instance.columns,
        "photometric": meta.get("photometric", ""),
        "is_color": meta.get("samples_per_pixel", 1) > 1 or meta.get("photometric") == "PALETTE COLOR",
        "default_window": {"center": center, "width": width} if center is not None else None,
        "rescale": {
            "slope": meta.get("rescale_slope", 1.0),
            "intercept": meta.get("rescale_intercept", 0.0),
            "type": meta.get("rescale_type", ""),
        },
        "pixel_spacing": meta.get("pixel_spacing"),
        "slice_thickness": meta.get("slice_thickness"),
        "slice_location": meta.get("slice_location"),
        "image_position": meta.get("image_position"),
        "image_orientation": meta.get("image_orientation"),
        "frame_time_ms": meta.get("frame_time_ms"),
        "lossy": bool(meta.get("lossy")),
        # Set at ingest: why the pixels cannot be shown ("" when they can, or there are none).
        "cannot_show": (instance.pixel_error or "This image cannot be shown.")
        if instance.pixel_status == PixelStatus.UNDECODABLE else "",
    }


def _ordered(series: Series) -> list[Instance]:
    """Instances in anatomical order when geometry allows (position along the slice normal),
    else by Instance Number. Scanners number slices head-first or feet-first; geometry is the
    truth the viewer's slice readout needs."""
    instances = list(series.instances.all())

    def along_normal(inst: Instance) -> float | None:
        pos, ori = (inst.meta or {}).get("image_position"), (inst.meta or {}).get("image_orientation")
        if not pos or not ori:
            return None
        r, c = ori[:3], ori[3:]
        normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        return sum(p * n for p, n in zip(pos, normal, strict=True))

    keys = [along_normal(i) for i in instances]
    if instances and all(k is not None for k in keys):
        return [i for _, i in sorted(zip(keys, instances, strict=True), key=lambda pair: (pair[0], pair[1].pk))]
    return sorted(instances, key=lambda i: (i.number is None, i.number or 0, i.pk))


def series_slices(series: Series) -> list[dict[str, Any]]:
    """``viewer_metadata`` for every instance of ``series``, in display order."""
    return [viewer_metadata(i) for i in _ordered(series)]


# --- Pixel status of rows imported before it was recorded --------------------------------


def instances_check_pixels(*, study: Study | None = None) -> int:
    """Set ``pixel_status``/``pixel_error`` on rows imported before the import recorded them
    (migration 0005 gave every row "ok"): "none" where there are no pixels, "undecodable" with
    the reason where the stored file's first frame cannot be shown. Returns how many rows were
    marked undecodable. Callers: an operator or a data migration, once; idempotent. Not an
    access to patient data (it reads bytes, like ``instances_verify``): not audited."""
    from imaging.dicom import render

    qs = Instance.objects.all() if study is None else Instance.objects.filter(series__study=study)
    qs.filter(rows__isnull=True).exclude(pixel_status=PixelStatus.NONE).update(pixel_status=PixelStatus.NONE, pixel_error="")
    marked = 0
    for pk, path in qs.filter(rows__isnull=False, pixel_status=PixelStatus.OK).values_list("pk", "storage_path").iterator(chunk_size=500):
        try:
            with storage.open_stored(path) as fh:
                problem = render.stream_decode_problem(fh)
        except FileNotFoundError:
            continue  # the integrity check reports missing files; this is about decoding
        if problem is not None:
            Instance.objects.filter(pk=pk).update(pixel_status=PixelStatus.UNDECODABLE, pixel_error=problem[:PIXEL_ERROR_CHARS])
            marked += 1
    return marked


# --- Integrity ----------------------------------------------------------------------------


@dataclass
class VerifyResult:
    checked: int = 0
    ok: int = 0
    mismatched: int = 0
    missing: int = 0
    alerts_created: int = 0


def instances_verify(*, limit: int | None = None, study: Study | None = None) -> VerifyResult:
    """Re-hash stored files (streaming) and compare with the SHA-256 taken at ingest.

    Callers: the nightly ``imaging.verify_integrity`` task (all files, least recently verified
    first) and the privacy office's re-check of one ``study``. Sets ``last_verified_at`` and
    ``verified_ok``; a mismatch or a missing file raises one ``IntegrityAlert`` that stays open
    until resolved (later runs do not repeat it). Not an access to patient data: not audited.
    """
    result = VerifyResult()
    # Never-verified files first, then the longest unverified (so a limited run makes progress).
    qs = Instance.objects.order_by(F("last_verified_at").asc(nulls_first=True), "pk")
    if study is not None:
        qs = qs.filter(series__study=study)
    if limit is not None:
        qs = qs[:limit]
    for instance in qs.iterator(chunk_size=500):
        digest = storage.stored_digest(instance.storage_path)
        result.checked += 1
        if digest is None:
            kind, found = IntegrityAlert.Kind.MISSING, ""
            result.missing += 1
        elif digest.sha256 != instance.sha256:
            kind, found = IntegrityAlert.Kind.MISMATCH, digest.sha256
            result.mismatched += 1
        else:
            kind, found = None, digest.sha256
            result.ok += 1
        with transaction.atomic():
            Instance.objects.filter(pk=instance.pk).update(last_verified_at=timezone.now(), verified_ok=kind is None)
            if kind is not None and not IntegrityAlert.objects.filter(
                instance=instance, kind=kind, resolved_at__isnull=True
            ).exists():
                IntegrityAlert.objects.create(
                    instance=instance, kind=kind, expected_sha256=instance.sha256, found_sha256=found,
                    details={"storage_path": instance.storage_path, "found_size": digest.size if digest else None},
                )
                result.alerts_created += 1
    if result.mismatched or result.missing:
        logger.warning("integrity check: %s mismatched, %s missing of %s", result.mismatched, result.missing, result.checked)
    return result

"""Reads of imaging data for an actor.

Every function that returns a patient's study, series or instance takes the ``actor`` and starts
from ``for_actor(actor)`` (``core.querysets``). Another patient's object raises ``Http404`` exactly
like a missing one (docs/security.md §9). Privacy officers reach a patient's studies only as
``actor.investigating(...)`` from a flag.

None of these write access events: the audited reads in ``imaging.services.viewing``
(``study_open`` and friends) call them and record the access in the same transaction
(docs/security.md §13). Functions that take a ``study`` or ``series`` read inside an object one
of the ``*_get`` selectors already narrowed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from core import crypto
from core.actor import Actor
from imaging.copies import deidentified_copy_among
from imaging.models import (
    DeidentifiedCopy,
    Instance,
    IntegrityAlert,
    PacsInstance,
    PacsPatientSync,
    PacsSyncRun,
    Patient,
    PixelStatus,
    PixelText,
    Series,
    Study,
)
from imaging.storage import open_stored

if TYPE_CHECKING:
    from imaging.dicom import compare, reveal, sr

# imaging.dicom (pydicom, numpy, Pillow: about 49 MB) is imported inside the functions that
# read headers, not here: this module is loaded by every process, the export worker included,
# which must stay under 100 MB (benchmarks/export_memory.py, tests/exports/test_worker.py).


def patient_get(*, actor: Actor) -> Patient | None:
    """The patient record the actor owns (a patient's own), or None: officers, administrators,
    systems and anonymous requests own none."""
    if actor.patient_id is None:
        return None
    return Patient.objects.for_actor(actor).filter(pk=actor.patient_id).first()


def patient_own(*, actor: Actor) -> Patient:
    """The actor's own patient record; ``Http404`` for anyone who has none (an officer, an
    administrator), so a patient-only page answers them like a missing one."""
    patient = patient_get(actor=actor)
    if patient is None:
        raise Http404("This account has no patient record.")
    return patient


def _image_series(study_ref: str = "pk") -> Subquery:
    """The first series of a study that has pictures (its thumbnail stands for the study)."""
    return Subquery(
        Series.objects.filter(study=OuterRef(study_ref), instances__rows__isnull=False,
                              instances__pixel_status=PixelStatus.OK)
        .order_by("number", "pk")
        .values("pk")[:1]
    )


# --- Counting images ------------------------------------------------------------------------------
#
# One rule, used by the home page, the study page and the viewer: an *image* is one stored
# instance with pixels (rows, columns and at least one frame: the viewer's own test,
# ``viewer_instances``); a *frame* is one picture of a multi-frame image (an ultrasound clip is
# one image of 30 frames). Reports and documents are not images. The pages say "2 images
# (31 frames)" when some image has more than one frame, and explain the words next to them.


def _has_pixels(prefix: str = "") -> Q:
    return Q(**{f"{prefix}rows__gt": 0, f"{prefix}columns__gt": 0, f"{prefix}frames__gt": 0})


@dataclass(frozen=True)
class ImageCount:
    """How many images and frames (the one counting rule above)."""

    images: int
    frames: int

    @property
    def has_clips(self) -> bool:
        """Some image has more than one frame: the pages then name the frames too."""
        return self.frames > self.images


def image_count_annotations(prefix: str) -> dict[str, Any]:
    """Aggregates for ``ImageCount`` over the instances at ``prefix`` ("series__instances__"
    from a study, "instances__" from a series): ``image_n`` and ``frame_n``."""
    shown = _has_pixels(prefix)
    return {"image_n": Count(f"{prefix}pk", filter=shown, distinct=True),
            "frame_n": Sum(f"{prefix}frames", filter=shown)}


def image_count_of(row: Any) -> ImageCount:
    """The ``ImageCount`` of a row annotated with :func:`image_count_annotations`."""
    return ImageCount(row.image_n or 0, row.frame_n or 0)


def image_count_for(instances: Iterable[Instance]) -> ImageCount:
    """The ``ImageCount`` of instances already loaded (the viewer's slices)."""
    images = [i for i in instances if i.is_image]
    return ImageCount(len(images), sum(i.frames for i in images))


def study_list(*, actor: Actor) -> QuerySet[Study]:
    """The studies the actor may reach, newest first, with their series count, their
    ``ImageCount`` (``image_n``, ``frame_n``; see :func:`image_count_of`) and the series whose
    thumbnail stands for each study (``thumb_series_id``, None if it has no images)."""
    return (
        Study.objects.for_actor(actor)
        .annotate(
            series_count=Count("series", distinct=True),
            **image_count_annotations("series__instances__"),
            thumb_series_id=_image_series(),
        )
        .order_by("-study_date", "-study_time", "-pk")
    )


def study_get(*, actor: Actor, study_id: int) -> Study:
    """One study the actor may reach; ``Http404`` for a missing study or anyone else's."""
    study = Study.objects.for_actor(actor).filter(pk=study_id).select_related("patient").first()
    if study is None:
        raise Http404("No such study.")
    return study


def series_get(*, actor: Actor, study_id: int, series_id: int) -> Series:
    series = (
        Series.objects.for_actor(actor)
        .filter(pk=series_id, study_id=study_id)
        .select_related("study", "study__patient")
        .first()
    )
    if series is None:
        raise Http404("No such series.")
    return series


def instance_get(*, actor: Actor, study_id: int, series_id: int, instance_id: int) -> Instance:
    instance = (
        Instance.objects.for_actor(actor)
        .filter(pk=instance_id, series_id=series_id, series__study_id=study_id)
        .select_related("series", "series__study", "series__study__patient")
        .first()
    )
    if instance is None:
        raise Http404("No such image.")
    return instance


# --- PACS sync state ---------------------------------------------------------------------------


def pacs_fetch_progress(*, actor: Actor) -> dict[str, Any] | None:
    """The home page's "fetching your images" state for a patient whose history is still coming
    from the PACS, or None (nobody else's, none once the first fetch completed)."""
    if actor.patient_id is None:
        return None
    state = (
        PacsPatientSync.objects.for_actor(actor)
        .filter(patient_id=actor.patient_id, last_synced_at__isnull=True)
        .first()
    )
    if state is None:
        return None
    total = state.instances_total
    return {
        "status": state.status,
        "failed": state.status == PacsPatientSync.Status.FAILED,
        "studies_done": state.studies_done,
        "studies_total": state.studies_total,
        "instances_done": state.instances_done,
        "instances_total": total,
        "percent": int(100 * state.instances_done / total) if total else 0,
    }


def pacs_sync_patients(*, actor: Actor, patient_ids: list[int] | None = None) -> list[Patient]:
    """The patients a PACS sync fetches for, within the actor's reach: those with an activated
    account (or only ``patient_ids`` among them), in record order. Caller: ``pacs.sync``."""
    qs = Patient.objects.for_actor(actor).filter(user__isnull=False, user__is_active=True).order_by("pk")
    if patient_ids is not None:
        qs = qs.filter(pk__in=patient_ids)
    return list(qs)


def pacs_known_instances(*, actor: Actor, sop_uids: list[str]) -> dict[str, str]:
    """SOP Instance UID -> the fingerprint of the PACS metadata an earlier sync imported it under,
    for those of ``sop_uids`` a sync has seen. Caller: ``pacs.sync`` (what to fetch again)."""
    return dict(
        PacsInstance.objects.for_actor(actor).filter(sop_uid__in=sop_uids).values_list("sop_uid", "metadata_sha256")
    )


def pacs_health() -> dict[str, Any]:
    """For /healthz: configured?, last completed sync, last error. Never raises. Names no
    patient (sync runs only), so any caller may ask."""
    from imaging.pacs.client import pacs_configured

    if not pacs_configured():
        return {"ok": True, "configured": False}
    try:
        last = PacsSyncRun.objects.exclude(status=PacsSyncRun.Status.RUNNING).first()
        last_ok = PacsSyncRun.objects.filter(status=PacsSyncRun.Status.OK).first()
        last_failed = PacsSyncRun.objects.filter(status=PacsSyncRun.Status.FAILED).first()
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not fail
        return {"ok": False, "configured": True, "error": exc.__class__.__name__}
    return {
        "ok": last is None or last.status == PacsSyncRun.Status.OK,
        "configured": True,
        "last_sync_at": last_ok.finished_at.isoformat() if last_ok and last_ok.finished_at else None,
        "last_error": last_failed.error if last_failed else None,
        "last_error_at": last_failed.finished_at.isoformat() if last_failed and last_failed.finished_at else None,
    }


# --- The study page ----------------------------------------------------------------------------


@dataclass
class Unshown:
    """Images of one series that cannot be shown, and why (found at ingest)."""

    count: int = 0
    total: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def all(self) -> bool:
        return self.count == self.total


@dataclass
class SeriesCard:
    series: Series
    kind: str  # "image" or a non-image kind from reveal.object_kind
    kind_name: str
    instances: int
    count: ImageCount  # images and frames (the one counting rule)
    readable: bool = False  # a report the report page shows (an SR, or a PDF document)
    unshown: Unshown | None = None  # None when every image can be shown


class StudyFile(NamedTuple):
    """One instance of a study as the study page needs it (:func:`_study_read`)."""

    pk: int
    series_id: int
    sha256: str
    storage_path: str
    sop_class: str
    rows: int | None
    columns: int | None
    frames: int
    pixel_status: str
    pixel_error: str
    verified_ok: bool | None
    last_verified_at: dt.datetime | None
    text_status: str | None  # its PixelText (OCR) row, None when OCR has not run
    text_kinds: list | None
    text_regions: list | None
    text_reason: str | None

    # The one counting rule (``_has_pixels``): the model's own property, which reads only rows,
    # columns and frames.
    is_image = Instance.is_image


_STUDY_FILE_FIELDS = ("pk", "series_id", "sha256", "storage_path", "sop_class", "rows", "columns", "frames",
                      "pixel_status", "pixel_error", "verified_ok", "last_verified_at", "pixel_text__status",
                      "pixel_text__kinds", "pixel_text__regions", "pixel_text__reason")


@dataclass
class StudyRead:
    """A study's series, each with its instances (``files``, in ``number``, ``pk`` order), their
    counts (``n``, ``image_n``, ``frame_n``, ``first_class``) and whether it has an open integrity
    alert (``open_alerts``): everything the study page shows about its files, in two queries."""

    series: list[Series]

    @property
    def files(self) -> Iterator[StudyFile]:
        """Every instance, in series order (``number``, ``pk``), then ``number``, ``pk``."""
        for series in self.series:
            yield from series.files


def _study_read(study: Study) -> StudyRead:
    """Read ``study``'s series and their instances once.

    The study page once read the instances five times (undecodable images, the series' counts,
    the header report's files, the OCR rows, the integrity counts), mostly as aggregates whose
    compilation in Django cost more CPU than PostgreSQL's work (issue 18: the study page's
    throughput). Now one plain read of the series and one of their instances; the counts are
    taken here in Python. The series' first SOP class is Python's ``min`` (code point order),
    where SQL's ``Min`` followed the database's collation: the same for UIDs under a C collation."""
    series = list(
        study.series.annotate(
            open_alerts=Exists(IntegrityAlert.objects.filter(instance__series=OuterRef("pk"), resolved_at__isnull=True))
        ).order_by("number", "pk")
    )
    by_series: dict[int, list[StudyFile]] = {s.pk: [] for s in series}
    if series:  # an instance always has a series: a study without series has no files to read
        rows = Instance.objects.filter(series_id__in=list(by_series)).order_by("number", "pk")
        for row in rows.values_list(*_STUDY_FILE_FIELDS):
            by_series[row[1]].append(StudyFile._make(row))
    for s in series:
        s.files = by_series[s.pk]
        images = [f for f in s.files if f.is_image]
        s.n = len(s.files)
        s.image_n = len(images)
        s.frame_n = sum(f.frames for f in images) if images else None
        s.first_class = min((f.sop_class for f in s.files), default=None)
    return StudyRead(series)


def _read_of(study: Study) -> StudyRead:
    """The read :func:`series_cards` left on ``study`` (``study.page_read``), or a new one."""
    read = getattr(study, "page_read", None)
    return read if read is not None else _study_read(study)


def series_cards(study: Study) -> list[SeriesCard]:
    """The study's series with counts, what kind of object each holds and which of its images
    cannot be shown. ``study`` came from :func:`study_get` (the study page,
    ``imaging.services.viewing.study_open``); this reads only its own series.

    Leaves its read on ``study`` (``study.page_read``) and on each card's series (``files``) for
    :func:`integrity_for_study` and :func:`header_report_for_study`, which the study page calls
    next in the same transaction: the page reads its files once."""
    from imaging.dicom import reveal, sr

    read = study.page_read = _study_read(study)
    cards: list[SeriesCard] = []
    for series in read.series:
        kind = "image" if series.image_n else reveal.object_kind(series.first_class or "", has_pixels=False)
        card = SeriesCard(series, kind, reveal.sop_class_name(series.first_class or ""), series.n, image_count_of(series))
        card.readable = kind == "report" or series.first_class == sr.ENCAPSULATED_PDF
        card.unshown = _unshown(series.files)
        cards.append(card)
    return cards


def _unshown(files: list[StudyFile]) -> Unshown | None:
    """The images of one series whose pixels cannot be decoded and why; None when there are none."""
    entry = Unshown()
    for f in files:
        if f.rows is None:
            continue
        entry.total += 1
        if f.pixel_status == PixelStatus.UNDECODABLE:
            entry.count += 1
            reason = f.pixel_error or _("This image cannot be shown.")
            if reason not in entry.reasons:
                entry.reasons.append(reason)
    return entry if entry.count else None


# --- Reports ---------------------------------------------------------------------------------------

# A study holds one report, sometimes a few (an addendum, a PDF copy); more than this is not a
# report a patient reads but an archive, and each is a file to parse on every page view.
MAX_REPORTS = 20
_SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"  # imaging.dicom.sr.ENCAPSULATED_PDF (pydicom not loaded here)


@dataclass
class StudyReport:
    series: Series
    instance: Instance
    report: sr.Report


def study_reports(study: Study) -> list[StudyReport]:
    """The radiology reports stored with ``study`` (already narrowed by :func:`study_get`):
    Structured Reports read into sections, Encapsulated PDFs with their title; in series order.
    Who may call: ``imaging.services.viewing.report_open``, which records the access."""
    from imaging.dicom import sr

    instances = (
        Instance.objects.filter(series__study=study)
        .filter(Q(sop_class__startswith=_SR_CLASS_PREFIX) | Q(sop_class=_PDF_CLASS))
        .select_related("series")
        .order_by("series__number", "series_id", "number", "pk")[:MAX_REPORTS]
    )
    found = []
    for instance in instances:
        try:
            with open_stored(instance.storage_path) as fh:
                report = sr.read_report(fh)
        except OSError:
            report = None
        if report is not None:
            found.append(StudyReport(instance.series, instance, report))
    return found


def document_pdf(instance: Instance) -> bytes | None:
    """The PDF in an Encapsulated PDF instance (narrowed by :func:`instance_get`), or None."""
    from imaging.dicom import sr

    if instance.sop_class != _PDF_CLASS:
        return None
    try:
        with open_stored(instance.storage_path) as fh:
            return sr.read_pdf(fh)
    except OSError:
        return None


@dataclass
class Integrity:
    total: int
    verified: int
    mismatched: int
    last_verified_at: dt.datetime | None  # the oldest "last verified" among verified files
    alerts: list[IntegrityAlert] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.alerts or self.mismatched:
            return "alert"
        if self.total and self.verified == self.total:
            return "ok"
        if self.verified:
            return "partial"
        return "pending"


def integrity_for_study(study: Study) -> Integrity:
    """When the study's stored files were last re-hashed, and whether they still match. Counted
    from the study page's one read of its files (:func:`series_cards`); the open alerts are read
    only when a series has one (most studies have none)."""
    read = _read_of(study)
    total = verified = mismatched = 0
    oldest: dt.datetime | None = None
    for f in read.files:
        total += 1
        if f.verified_ok is True:
            verified += 1
            if f.last_verified_at is not None and (oldest is None or f.last_verified_at < oldest):
                oldest = f.last_verified_at
        elif f.verified_ok is False:
            mismatched += 1
    alerts: list[IntegrityAlert] = []
    if any(s.open_alerts for s in read.series):
        alerts = list(
            IntegrityAlert.objects.filter(instance__series__study=study, resolved_at__isnull=True)
            .select_related("instance", "instance__series")
            .order_by("-detected_at")[:20]
        )
    return Integrity(total, verified, mismatched, oldest, alerts)


# A report is rebuilt only when the study's files change (the key covers every SHA-256). An hour
# bounds how long header values of a patient stay in the shared cache after the last view.
REVEAL_CACHE_SECONDS = 60 * 60


def header_report_for_study(study: Study, *, series: list[Series] | None = None) -> tuple[dict, list[reveal.Group]]:
    """What the study's files reveal, grouped for the patient: their headers (cached), the text
    OCR found in their pixels and the series a face can be rebuilt from (both read from the
    database on every call: OCR runs after ingest, so they change while the files do not).

    Who may call: the study page (``imaging.services.viewing.study_open``), with a study already
    narrowed by :func:`study_get`; that service records the access event. Nothing is OCRed here
    (ingest enqueues it). ``series``: the study's series in page order as :func:`series_cards`
    read them (each with its ``files``), when the caller has them: the page then reads no
    instances again (issue 18: the study page's throughput). Without it, one read of its own."""
    from imaging.dicom import reveal

    if series is None or any(not hasattr(s, "files") for s in series):
        series = _study_read(study).series
    files = [f for s in series for f in s.files]
    fingerprint = hashlib.sha256("".join(f.sha256 for f in files).encode()).hexdigest()
    key = f"imaging:reveal:v{reveal.REPORT_VERSION}:{study.pk}:{fingerprint}"
    # The report holds the patient's header values; the shared cache only ever sees it encrypted.
    cached = cache.get(key)
    if cached is not None:
        report = json.loads(crypto.decrypt(cached))
    else:
        report = reveal.build_report(_open_each((str(f.series_id), f.storage_path) for f in files))
        cache.set(key, crypto.encrypt(json.dumps(report).encode()), REVEAL_CACHE_SECONDS)
    labels = {str(s.pk): _series_label(s) for s in series}
    pixels = reveal.pixel_summary(_pixel_rows(series))
    faces = _head_volumes(study, series)
    return report, reveal.present(report, labels, pixels=pixels, faces=faces)


def _pixel_rows(series: list[Series]) -> Iterator[reveal.PixelRow]:
    """Each image of the series (read by :func:`_study_read`) with its OCR result
    (``PixelText``), or none yet, by series id then ``number``, ``pk``. A file whose pixels
    cannot be decoded and has no OCR row counts as "could not be checked"."""
    from imaging.dicom import reveal

    for s in sorted(series, key=lambda s: s.pk):
        modality = s.modality or ""
        for f in s.files:
            if f.rows is None or f.columns is None or not f.frames or f.pixel_status == PixelStatus.NONE:
                continue
            status, reason = f.text_status, f.text_reason
            if status is None and f.pixel_status == PixelStatus.UNDECODABLE:
                status, reason = PixelText.Status.NOT_CHECKED, f.pixel_error
            texts = tuple(
                (str(r.get("text", "")), tuple(r.get("kinds") or ())) for r in (f.text_regions or []) if isinstance(r, dict)
            )
            yield reveal.PixelRow(str(s.pk), modality, status or "", tuple(f.text_kinds or ()), texts, reason or "")


def _head_volumes(study: Study, series: list[Series]) -> dict[str, int]:
    """Series of the study a face can be rebuilt from (``imaging.faces``' rule, the one the
    de-identified copy's README uses), with their number of images. ``series`` carry ``n``."""
    from imaging import faces

    return {str(s.pk): s.n for s in series if faces.is_head_volume(s.modality, s.n, s.body_part, s.description,
                                                                   study.description)}


def _open_each(items: Iterable[tuple[str, str]]) -> Iterator[tuple[str, IO[bytes] | str]]:
    """Open stored files one at a time, closing each before the next (no fd pile-up)."""
    for series_key, path in items:
        try:
            fh = open_stored(path)
        except OSError:
            yield series_key, ""  # counted as unreadable
            continue
        with fh:
            yield series_key, fh


def _series_label(series: Series) -> str:
    parts = [f"Series {series.number}" if series.number is not None else "Series"]
    if series.description:
        parts.append(series.description)
    elif series.modality:
        parts.append(series.modality)
    return " · ".join(parts)


# --- The viewer --------------------------------------------------------------------------------


def viewer_instances(series: Series) -> QuerySet[Instance]:
    """The instances of ``series`` (already narrowed by :func:`series_get`) that have pixels to
    step through (``Instance.is_image``): the viewer's slices and the thumbnail's candidates.
    Their display order is ``imaging.services.rendering.slices_in_order``."""
    return series.instances.filter(_has_pixels())


def viewer_series_strip(study: Study) -> list[Series]:
    """The series of ``study`` (already narrowed by :func:`series_get`) the viewer can show, in
    order, each with its ``ImageCount`` aggregates (``image_n``, ``frame_n``): the viewer's
    series strip. One query."""
    return list(
        study.series.annotate(**image_count_annotations("instances__")).filter(image_n__gt=0).order_by("number", "pk")
    )


# --- Verify a copy -----------------------------------------------------------------------------


@dataclass
class CopyResult:
    name: str
    outcome: str  # identical, modified, deidentified_copy, same_study, unknown, not_dicom, too_large
    size: int = 0
    study: Study | None = None
    instance: Instance | None = None
    difference: compare.Difference | None = None
    copy: DeidentifiedCopy | None = None  # deidentified_copy: which export made it, and when
    pixels_match: bool | None = None  # deidentified_copy: pixels as we packaged them (None: unreadable)


def _pixels_match(fileobj: IO[bytes], copy: DeidentifiedCopy) -> bool | None:
    """Whether an uploaded de-identified file's pixels are exactly those Lightbox packaged (the
    original's, or the original's with text masked); None if they cannot be read."""
    from imaging.dicom.deidentify import pixel_sha256_of

    try:
        fileobj.seek(0)
        return pixel_sha256_of(fileobj) == copy.pixel_sha256
    except Exception:  # noqa: BLE001 - pydicom raises many types on a damaged upload
        return None
    finally:
        fileobj.seek(0)


def copies_compare(*, actor: Actor, uploads: Iterable[tuple[str, IO[bytes]]]) -> list[CopyResult]:
    """Compare files a patient holds with the originals on record within the actor's reach
    (for a patient: their own record only).

    A file matching another patient's original is reported as "unknown", exactly like a file
    we never had: the answer must not reveal that someone else's scan exists. A file from one of
    the patient's own de-identified copies is recognised by its new SOP Instance UID, which
    Lightbox keeps server side (``imaging.copies``). The uploads are read, never stored.
    Who may call: ``imaging.services.viewing.copies_verify``, which records the query.
    """
    from imaging.dicom import compare

    own_instances = Instance.objects.for_actor(actor)
    own_studies = Study.objects.for_actor(actor)
    results: list[CopyResult] = []
    # One budget of decoded pixels for all the files of this check (docs/security.md §21).
    budget = compare.DecodeBudget.for_request()
    for name, fileobj in uploads:
        facts = compare.inspect_upload(fileobj)
        if not facts.is_dicom:
            results.append(CopyResult(name, "too_large" if facts.reason == "too_large" else "not_dicom", facts.size))
            continue
        same = own_instances.filter(sha256=facts.sha256).select_related("series__study").first()
        if same is not None:
            results.append(CopyResult(name, "identical", facts.size, same.series.study, same))
            continue
        original = own_instances.filter(sop_uid=facts.sop_uid).select_related("series__study").first()
        if original is not None:
            try:
                with open_stored(original.storage_path) as fh:
                    difference = compare.diff_files(fileobj, fh, budget=budget)
            except (compare.CompareError, OSError):
                difference = None  # it differs (the fingerprint said so); how, we cannot tell
            results.append(CopyResult(name, "modified", facts.size, original.series.study, original, difference))
            continue
        copy = deidentified_copy_among(own_instances, facts.sop_uid)
        if copy is not None:
            results.append(CopyResult(name, "deidentified_copy", facts.size, copy.original.series.study,
                                      copy.original, copy=copy, pixels_match=_pixels_match(fileobj, copy)))
            continue
        study = own_studies.filter(study_uid=facts.study_uid).first() if facts.study_uid else None
        results.append(CopyResult(name, "same_study" if study else "unknown", facts.size, study))
    return results

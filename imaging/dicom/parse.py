"""Defensive parsing of one DICOM file into plain metadata (docs/security.md §16).

Called by ``imaging.services.ingest.dicom_import`` for every file it meets, before anything is stored.
A file is either turned into a :class:`ParsedInstance` (or a :class:`DicomDirIndex` for a media
directory) or rejected with :class:`DicomRejected`, whose ``reason`` is a short sentence a
person can act on. No pydicom object ever leaves this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
import pydicom.config
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from imaging.dicom import limits

# DICOM files carry no intrinsic size limit, but a single object above 2 GiB is almost always
# malformed or hostile (pydicom holds element values in memory, and multi-gigabyte objects such
# as whole-slide images are split into many files by their modalities). The limit keeps one
# upload from exhausting memory on a two-core worker.
MAX_FILE_BYTES = 2 * 1024**3
# Headers larger than this before the pixel data are not plausible and would be slow to walk.
MAX_DIRECTORY_RECORDS = 200_000

# PS3.5 9.1: a UID is dot-separated numbers, digits only, at most 64 characters. Leading zeros
# in a component are invalid in theory but common in real equipment; we accept them because
# they cannot form a path or inject anything.
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
# What anonymisers and some archives write instead of a UID: a hash (64 hex characters), a UUID,
# base64url. pydicom reads such files, and the UID only ever labels rows (storage names are
# content addresses, docs/security.md §16), so Study, Series and SOP Instance UIDs made of letters,
# digits, '-' and '_' in dot-separated components are kept, with a warning. Everything that could
# be a path or markup ('/', '\\', '..', ':', spaces, NUL and other control characters) still fails.
_HASH_LIKE_UID_RE = re.compile(r"[0-9A-Za-z_-]+(\.[0-9A-Za-z_-]+)*")
MAX_UID_CHARS = 64  # PS3.5 9.1; also the width of the database columns that hold UIDs
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
_UNDEFINED = 0xFFFFFFFF
# Preambles of executables and scripts: a DICOM/PE polyglot (CVE-2019-11687) is a valid DICOM
# file that Windows will also run. The 128-byte preamble is free-form by the standard, so we
# refuse these magic numbers rather than rewrite the bytes (which would change the file's hash).
_EXECUTABLE_MAGIC = (
    b"MZ",  # Windows PE / DOS
    b"\x7fELF",  # Linux
    b"#!",  # scripts
    b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",  # Mach-O
    b"\xca\xfe\xba\xbe",  # Mach-O universal / Java class
    b"PK\x03\x04",  # ZIP (JAR, Office) polyglots
    b"%PDF",
    b"<",  # HTML/SVG/script markup
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DicomRejected(Exception):
    """The file cannot be imported; ``reason`` says why in one short sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedInstance:
    """What the models need from one file, as plain Python values."""

    sop_uid: str
    sop_class: str
    sop_class_name: str
    transfer_syntax: str
    study_uid: str
    series_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: dt.date | None
    study_date: dt.date | None
    study_time: dt.time | None
    study_description: str
    accession: str
    institution: str
    referring_physician: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    instance_number: int | None
    is_image: bool
    frames: int
    rows: int | None
    columns: int | None
    # Viewer metadata (window, rescale, geometry): JSON-safe, see ``viewer_info``.
    viewer: dict[str, Any] = field(default_factory=dict)
    # Sentences for the import report: what was accepted although it is not standard.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DicomDirIndex:
    """A media directory (DICOMDIR): the referenced files, as path components relative to it."""

    referenced: list[tuple[str, ...]]


def valid_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 defines it: digits and dots, at most 64 characters."""
    return 0 < len(value) <= MAX_UID_CHARS and bool(_UID_RE.fullmatch(value))


def acceptable_uid(value: str) -> bool:
    """A UID Lightbox stores and looks up: a valid one, or a hash-like one (see
    ``_HASH_LIKE_UID_RE``). Callers: the import (Study, Series, SOP Instance UIDs) and "Verify a
    copy", which must find an original by the same UIDs the import accepted."""
    return 0 < len(value) <= MAX_UID_CHARS and bool(_HASH_LIKE_UID_RE.fullmatch(value))


def sniff_preamble(head: bytes) -> None:
    """Check the first 132 bytes: the 'DICM' marker, and no executable in the preamble."""
    if len(head) < 132 or head[128:132] != b"DICM":
        raise DicomRejected("Not a DICOM file: no 'DICM' marker at byte 128 (DICOM Part 10 format).")
    preamble = head[:128]
    if any(preamble.startswith(magic) for magic in _EXECUTABLE_MAGIC):
        raise DicomRejected("The file's preamble looks like an executable or script (DICOM polyglot); refused.")


def parse_file(path: str | os.PathLike[str]) -> ParsedInstance | DicomDirIndex:
    """Read and validate one file. Raises :class:`DicomRejected` with a reason."""
    with warnings.catch_warnings():
        # Value warnings are expected on real-world files; rejections carry their own reason.
        warnings.simplefilter("ignore")
        return _parse_file(Path(path))


def patient_identity(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(Patient ID, Issuer of Patient ID) from the file's own header, each stripped ("" when
    absent), or None when the header cannot be read (the import then rejects the file with its
    reason). Reads only those two elements. Caller: the PACS sync, which never files a
    retrieved file under a patient on the PACS index's word alone."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "IssuerOfPatientID"])
    except Exception:  # noqa: BLE001 - pydicom raises many types on a damaged file
        return None
    return str(ds.get("PatientID", "") or "").strip(), str(ds.get("IssuerOfPatientID", "") or "").strip()


def parse_buffer(data: bytes) -> tuple[ParsedInstance | DicomDirIndex, Header]:
    """``parse_file`` for a whole file already in memory (the import reads each file once), with
    the dataset kept as a :class:`Header` for ``imaging.dicom.render.header_decode_problem``, so
    the header is parsed once per file, not once per step."""
    if len(data) > MAX_FILE_BYTES:
        raise DicomRejected(f"File is too large ({len(data)} bytes; the limit is {MAX_FILE_BYTES}).")
    with warnings.catch_warnings(), _values_unvalidated():
        warnings.simplefilter("ignore")
        # Everything is in memory already: nothing is deferred to a second read.
        stream = io.BytesIO(data)
        ds = _read(stream, stream, defer_size=None)
        return _checked(ds, len(data)), Header(ds, data)


@contextlib.contextmanager
def _values_unvalidated() -> Iterator[None]:
    """pydicom's value validation off while a file is parsed for the import (about a tenth of
    the parse's CPU on a CT slice). In pydicom's default mode (WARN) a bad value only issues a
    warning, and every warning of a parse is ignored (a rejection carries its own reason, and
    the values are checked here): the parse returns the same either way. A process that set
    RAISE keeps it. pydicom has no per-read option, hence the setting, restored after; import
    processes parse in one thread (the sync threads never parse)."""
    settings = pydicom.config.settings
    if settings.reading_validation_mode != pydicom.config.WARN:
        yield
        return
    settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode = pydicom.config.WARN


class Header:
    """A parsed file for the other modules of ``imaging.dicom`` only (no pydicom object leaves the
    package): the dataset and the file's bytes."""

    __slots__ = ("dataset", "data")

    def __init__(self, dataset: Any, data: bytes) -> None:
        self.dataset = dataset
        self.data = data


def plain_monochrome(header: Header, *, max_frame_pixels: int) -> bool:
    """``limits.plain_monochrome`` for a file ``parse_buffer`` accepted as an image: whether its
    first frame is certain to decode and display, from the header alone."""
    try:
        g = limits.geometry(header.dataset)
    except limits.PixelLimitError:
        return False
    return limits.plain_monochrome(header.dataset, g, max_frame_pixels=max_frame_pixels)


def _parse_file(path: Path) -> ParsedInstance | DicomDirIndex:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DicomRejected(f"Cannot read the file ({exc.strerror or exc}).") from exc
    if size > MAX_FILE_BYTES:
        raise DicomRejected(f"File is too large ({size} bytes; the limit is {MAX_FILE_BYTES}).")
    with open(path, "rb") as fh:
        # defer_size: big values (pixel data) are left on disk (read again from ``path`` when
        # needed); we only need their length.
        return _checked(_read(fh, path, defer_size="256 KB"), size)


def _read(fh: BinaryIO, source: BinaryIO | Path, *, defer_size: str | None) -> Any:
    """Check the preamble and the inflated size on ``fh``, then read ``source`` (the same file)."""
    sniff_preamble(fh.read(132))
    try:
        # docs/security.md §21: pydicom inflates a deflated dataset whole; bounded first.
        limits.check_inflated_size(fh)
    except limits.PixelLimitError as exc:
        raise DicomRejected(exc.reason) from exc
    fh.seek(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # force=False: anything without the Part 10 header is refused rather than guessed.
            ds = pydicom.dcmread(source, force=False, defer_size=defer_size)
        except InvalidDicomError as exc:
            raise DicomRejected("Not a valid DICOM file (missing or broken file meta information).") from exc
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on hostile input
            raise DicomRejected(f"Malformed DICOM: {_short(exc)}") from exc
    for w in caught:
        text = str(w.message)
        if "End of file reached" in text or "truncated" in text.lower():
            raise DicomRejected("The file is truncated (it ends inside an element).")
    return ds


def _checked(ds: Any, size: int) -> ParsedInstance | DicomDirIndex:
    try:
        return _inspect(ds, size)
    except DicomRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily: a bad one raises here, not in dcmread
        raise DicomRejected(f"Malformed DICOM: {_short(exc)}") from exc


def _inspect(ds: Any, size: int) -> ParsedInstance | DicomDirIndex:
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = _uid_text(meta, "TransferSyntaxUID") if meta is not None else ""
    if not transfer_syntax:
        raise DicomRejected("Missing Transfer Syntax UID in the file meta information.")
    if not valid_uid(transfer_syntax):
        raise DicomRejected("Invalid Transfer Syntax UID.")
    if transfer_syntax != _DEFLATED:
        _check_complete(ds, size)

    media_class = _uid_text(meta, "MediaStorageSOPClassUID")
    if media_class == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        return _dicomdir(ds)
    return _instance(ds, transfer_syntax, media_class)


# --- Structure ---------------------------------------------------------------------------


def _check_complete(ds: Any, size: int) -> None:
    """pydicom reads truncated files leniently; we do not. Each top-level element with a
    defined length must end inside the file, and the last one must end at the file's end."""
    last_end = None
    last_tag = None
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        if tell is None or length is None or length == _UNDEFINED:
            # Already converted by pydicom, or delimited: its end is not known from here.
            last_end, last_tag = None, tag
            continue
        end = tell + length
        if end > size:
            raise DicomRejected(f"The file is truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) ends past the end of the file.")
        last_end, last_tag = end, tag
    if last_tag is not None and last_end is not None and last_end < size:
        # Fewer than 8 bytes were left: pydicom stops silently on a partial element header.
        raise DicomRejected("The file is truncated or has unparsed bytes after the last element.")


def _dicomdir(ds: Any) -> DicomDirIndex:
    records = ds.get("DirectoryRecordSequence") or []
    if len(records) > MAX_DIRECTORY_RECORDS:
        raise DicomRejected("DICOMDIR has an implausible number of records.")
    referenced: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for record in records:
        value = record.get("ReferencedFileID")
        if not value:
            continue
        parts = (value,) if isinstance(value, str) else tuple(value)
        parts = tuple(str(p).strip() for p in parts)
        if parts not in seen:
            seen.add(parts)
            referenced.append(parts)
    return DicomDirIndex(referenced=referenced)


# --- Instance ------------------------------------------------------------------------------


def _instance(ds: Any, transfer_syntax: str, media_class: str) -> ParsedInstance:
    notes: list[str] = []
    sop_uid = _required_uid(ds, "SOPInstanceUID", "SOP Instance UID", notes)
    study_uid = _required_uid(ds, "StudyInstanceUID", "Study Instance UID", notes)
    series_uid = _required_uid(ds, "SeriesInstanceUID", "Series Instance UID", notes)
    sop_class = _uid_text(ds, "SOPClassUID") or media_class
    if not sop_class:
        raise DicomRejected("Missing SOP Class UID.")
    if not valid_uid(sop_class):
        raise DicomRejected("Invalid SOP Class UID (not digits and dots, or longer than 64 characters).")
    patient_id = _text(ds, "PatientID", 64)
    if not patient_id:
        raise DicomRejected("Missing Patient ID: the file cannot be matched to a patient.")

    pixel_tag = next((t for t in _PIXEL_TAGS if t in ds), None)
    rows = _int(ds, "Rows")
    columns = _int(ds, "Columns")
    is_image = pixel_tag is not None and bool(rows) and bool(columns)
    frames = 0
    if is_image:
        # docs/security.md §21: the header's size values must describe an image and the pixel
        # data must agree with them (limits: the one check every decoder's caller makes). A
        # real image larger than DICOM_MAX_DECODED_BYTES is not refused here: it is the
        # patient's record, stored and marked undecodable by the import's decode check.
        try:
            geometry = limits.geometry(ds)
            limits.check_pixel_data(ds, geometry)
        except limits.PixelLimitError as exc:
            raise DicomRejected(exc.reason) from exc
        frames = geometry.frames
    elif pixel_tag is not None:
        raise DicomRejected("Pixel data without Rows and Columns.")

    return ParsedInstance(
        sop_uid=sop_uid,
        sop_class=sop_class,
        sop_class_name=_uid_name(sop_class),
        transfer_syntax=transfer_syntax,
        study_uid=study_uid,
        series_uid=series_uid,
        patient_id=patient_id,
        issuer=_text(ds, "IssuerOfPatientID", 64),
        patient_name=_person(ds, "PatientName"),
        birth_date=_date(ds, "PatientBirthDate"),
        study_date=_date(ds, "StudyDate") or _date(ds, "SeriesDate") or _date(ds, "ContentDate"),
        study_time=_time(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription", 200),
        accession=_text(ds, "AccessionNumber", 64),
        institution=_text(ds, "InstitutionName", 200),
        referring_physician=_person(ds, "ReferringPhysicianName"),
        modality=_text(ds, "Modality", 16).upper(),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription", 200),
        body_part=_text(ds, "BodyPartExamined", 64),
        instance_number=_int(ds, "InstanceNumber"),
        is_image=is_image,
        frames=frames,
        rows=rows if is_image else None,
        columns=columns if is_image else None,
        viewer=viewer_info(ds) if is_image else {"sop_class_name": _uid_name(sop_class)},
        warnings=tuple(notes),
    )


def viewer_info(ds: Any, frame: int = 0) -> dict[str, Any]:
    """Window, rescale and geometry the viewer needs, JSON-safe. Enhanced (multi-frame) objects
    keep these in functional groups; the values for ``frame`` are used, shared ones otherwise."""
    center, width = _window(ds, frame)
    slope = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    spacing = _group_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    thickness = _group_value(ds, frame, "PixelMeasuresSequence", "SliceThickness")
    position = _group_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    orientation = _group_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    frame_time = _float(ds, "FrameTime")
    return {
        "sop_class_name": _uid_name(_uid_text(ds, "SOPClassUID")),
        "photometric": _text(ds, "PhotometricInterpretation", 32).upper(),
        "samples_per_pixel": _int(ds, "SamplesPerPixel") or 1,
        "bits_stored": _int(ds, "BitsStored"),
        "pixel_representation": _int(ds, "PixelRepresentation") or 0,
        "window_center": center,
        "window_width": width,
        "rescale_slope": _as_float(slope, 1.0),
        "rescale_intercept": _as_float(intercept, 0.0),
        "rescale_type": _text(ds, "RescaleType", 16) or ("HU" if _text(ds, "Modality", 16).upper() == "CT" else ""),
        "pixel_spacing": _float_list(spacing, 2),
        "slice_thickness": _as_float(thickness, None),
        "slice_location": _float(ds, "SliceLocation"),
        "image_position": _float_list(position, 3),
        "image_orientation": _float_list(orientation, 6),
        "frame_time_ms": frame_time,
        "lossy": _text(ds, "LossyImageCompression", 2) == "01",
    }


def _window(ds: Any, frame: int) -> tuple[float | None, float | None]:
    center = _group_value(ds, frame, "FrameVOILUTSequence", "WindowCenter")
    width = _group_value(ds, frame, "FrameVOILUTSequence", "WindowWidth")
    c = _first_float(center)
    w = _first_float(width)
    if c is None or w is None or w <= 0:
        return None, None
    return c, w


def _group_value(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """``keyword`` from the top level, else per-frame functional groups, else shared ones."""
    try:
        if keyword in ds:
            return ds[keyword].value
        for groups_kw, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
            groups = ds.get(groups_kw)
            if groups and len(groups) > index:
                seq = groups[index].get(sequence)
                if seq and keyword in seq[0]:
                    return seq[0][keyword].value
    except Exception:  # noqa: BLE001 - optional display metadata never rejects a file
        return None
    return None


# --- Value helpers (every accessor tolerates garbage) ---------------------------------------


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _clean(text)[:160]


def _clean(value: str) -> str:
    # PostgreSQL refuses NUL in text; other control characters have no place in a label.
    return _CONTROL_RE.sub("", value).strip()


def _raw_value(ds: Any, keyword: str) -> Any:
    if ds is None:
        return None
    try:
        # One look-up, not ``in`` then ``[]`` (each turns the keyword into a tag): a seventh of
        # the import's parse of a CT slice. None when absent, as before.
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - an undecodable value is treated as absent
        return None


def _text(ds: Any, keyword: str, max_len: int) -> str:
    value = _raw_value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return _clean(str(value))[:max_len]


def _uid_text(ds: Any, keyword: str) -> str:
    value = _raw_value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip().rstrip("\x00").strip()


def _required_uid(ds: Any, keyword: str, label: str, notes: list[str]) -> str:
    """The UID, or a rejection. A hash-like UID is kept and a sentence added to ``notes``."""
    value = _uid_text(ds, keyword)
    if not value:
        raise DicomRejected(f"Missing {label}.")
    if valid_uid(value):
        return value
    if acceptable_uid(value):
        notes.append(
            f"The {label} is not a standard DICOM UID (digits and dots), as some anonymisers write "
            "them; it was kept as written."
        )
        return value
    raise DicomRejected(
        f"Invalid {label}: only digits, letters, '-' and '_' in dot-separated parts are accepted, "
        f"at most {MAX_UID_CHARS} characters."
    )


def _uid_name(uid: str) -> str:
    if not uid:
        return ""
    try:
        name = UID(uid).name
    except Exception:  # noqa: BLE001
        return uid
    return name if name != uid else ""


def _person(ds: Any, keyword: str) -> str:
    value = _raw_value(ds, keyword)
    if value is None:
        return ""
    try:
        family = _clean(str(value.family_name))
        given = " ".join(p for p in (_clean(str(value.given_name)), _clean(str(value.middle_name))) if p)
        prefix, suffix = _clean(str(value.name_prefix)), _clean(str(value.name_suffix))
        name = " ".join(p for p in (prefix, given, family, suffix) if p)
        return name[:200] or _clean(str(value)).replace("^", " ")[:200]
    except Exception:  # noqa: BLE001
        return _clean(str(value)).replace("^", " ")[:200]


def _date(ds: Any, keyword: str) -> dt.date | None:
    text = _text(ds, keyword, 32).replace(".", "").replace("-", "")
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _time(ds: Any, keyword: str) -> dt.time | None:
    text = _text(ds, keyword, 32).replace(":", "")
    digits = text.split(".")[0]
    if len(digits) < 2 or not digits.isdigit():
        return None
    try:
        return dt.time(int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0))
    except ValueError:
        return None


def _int(ds: Any, keyword: str, *, strict: bool = False) -> int | None:
    value = _raw_value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = value[0]
        number = float(str(value).strip())
        if not math.isfinite(number) or abs(number) >= 2**31:
            raise ValueError(value)
        return int(number)
    except (ValueError, TypeError, IndexError) as exc:
        if strict:
            raise DicomRejected(f"Invalid value for {keyword}: {_clean(str(value))[:32]!r}.") from exc
        return None


def _as_float(value: Any, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = value[0]
        number = float(value)
    except (ValueError, TypeError, IndexError):
        return default
    return number if math.isfinite(number) else default


def _first_float(value: Any) -> float | None:
    return _as_float(value, None)


def _float(ds: Any, keyword: str) -> float | None:
    return _as_float(_raw_value(ds, keyword), None)


def _float_list(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        items = [float(v) for v in value]
    except (ValueError, TypeError):
        return None
    if len(items) != n or not all(math.isfinite(v) for v in items):
        return None
    return items

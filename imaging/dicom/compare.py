"""Comparing a file a patient holds with the original on record ("Verify a copy").

Two steps, both free of database access so they can be tested on plain files:

- :func:`inspect_upload` fingerprints an uploaded file (SHA-256 over every byte) and, if it is
  DICOM, reads the identifiers needed to find the original (SOP Instance, Series, Study UIDs).
- :func:`diff_files` says how a file differs from the original: which header attributes were
  changed, added or removed, and whether the pixels are the same (byte for byte, or the same
  picture re-encoded) or changed.

The caller (``imaging.selectors``) decides which originals a patient may be compared with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import IO

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imaging.dicom.parse import acceptable_uid

PIXEL_TAG = 0x7FE00010
# Listing hundreds of changed attributes helps nobody; the count says how many more.
MAX_CHANGES = 40
MAX_VALUE_CHARS = 80
_CHUNK = 1024 * 1024
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


class CompareError(Exception):
    """One of the files could not be read well enough to compare."""


@dataclass
class UploadFacts:
    sha256: str
    size: int
    is_dicom: bool
    sop_uid: str = ""
    series_uid: str = ""
    study_uid: str = ""
    reason: str = ""  # why it is not DICOM


@dataclass
class AttributeChange:
    tag: str
    name: str
    change: str  # "changed", "added", "removed"
    before: str = ""
    after: str = ""


@dataclass
class Difference:
    changes: list[AttributeChange] = field(default_factory=list)
    more_changes: int = 0
    pixels: str = "same"  # "same", "same_picture" (re-encoded), "changed", "unknown", "none"
    pixels_changed_fraction: float | None = None
    transfer_syntax_changed: bool = False

    @property
    def changed_percent(self) -> str:
        """The share of changed pixel values, for people ("0.61%", "< 0.01%")."""
        if self.pixels_changed_fraction is None:
            return ""
        pct = self.pixels_changed_fraction * 100
        return "< 0.01%" if 0 < pct < 0.01 else f"{pct:.2g}%"

    @property
    def header_changed(self) -> bool:
        return bool(self.changes) or self.more_changes > 0


def sha256_of(fileobj: IO[bytes]) -> tuple[str, int]:
    fileobj.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := fileobj.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    fileobj.seek(0)
    return digest.hexdigest(), size


def _read(fileobj: IO[bytes], *, pixels: bool) -> Dataset:
    """A DICOM Part 10 file, or a bare dataset that at least names its SOP instance."""
    fileobj.seek(0)
    try:
        return pydicom.dcmread(fileobj, stop_before_pixels=not pixels)
    except InvalidDicomError:
        fileobj.seek(0)
        ds = pydicom.dcmread(fileobj, stop_before_pixels=not pixels, force=True)
        if not ds.get("SOPInstanceUID") or not ds.get("SOPClassUID"):
            raise
        return ds


def inspect_upload(fileobj: IO[bytes]) -> UploadFacts:
    digest, size = sha256_of(fileobj)
    try:
        ds = _read(fileobj, pixels=False)
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        series_uid, study_uid = _lookup_uid(ds, "SeriesInstanceUID"), _lookup_uid(ds, "StudyInstanceUID")
    except Exception:  # noqa: BLE001 - pydicom raises many types on hostile input, some only when a value is read
        return UploadFacts(digest, size, False, reason="not_dicom")
    finally:
        fileobj.seek(0)
    if not sop_uid:
        return UploadFacts(digest, size, False, reason="no_identifier")
    return UploadFacts(digest, size, True, sop_uid=_valid_or_empty(sop_uid), series_uid=series_uid, study_uid=study_uid)


def _valid_or_empty(value: str) -> str:
    """A UID to look originals up by. The import keeps valid and hash-like UIDs (``acceptable_uid``),
    so the same rule finds every original; anything else (a NUL, a path, 65 characters) can match
    nothing and becomes "" (PostgreSQL refuses NUL in queries)."""
    value = value.strip().rstrip("\x00").strip()
    return value if acceptable_uid(value) else ""


def _lookup_uid(ds: Dataset, keyword: str) -> str:
    return _valid_or_empty(str(ds.get(keyword, "") or ""))


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _name(element: DataElement) -> str:
    if element.tag.is_private:
        return f"Private field {_tag_text(element.tag)}"
    return element.name


def _shown(element: DataElement | None) -> str:
    if element is None:
        return ""
    if element.tag.is_private:
        return ""  # the manufacturer's data: say that it changed, not what it holds
    if element.VR in _BINARY_VRS:
        return "(binary data)"
    if element.VR == "SQ":
        return f"({len(element.value or [])} item(s))"
    text = str(element.value if element.value is not None else "")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _same(a: DataElement, b: DataElement) -> bool:
    if a.VR == "SQ" or b.VR == "SQ":
        items_a, items_b = list(a.value or []), list(b.value or [])
        return len(items_a) == len(items_b) and all(_datasets_equal(x, y) for x, y in zip(items_a, items_b, strict=True))
    try:
        return bool(a.value == b.value)
    except (ValueError, TypeError):
        return repr(a.value) == repr(b.value)


def _datasets_equal(a: Dataset, b: Dataset) -> bool:
    tags_a = {t for t in a.keys() if t.element != 0}
    tags_b = {t for t in b.keys() if t.element != 0}
    return tags_a == tags_b and all(_same(a[t], b[t]) for t in tags_a)


def _header_changes(upload: Dataset, original: Dataset) -> list[AttributeChange]:
    changes: list[AttributeChange] = []
    # Group lengths are recomputed by any writer; they are bookkeeping, not content.
    tags = sorted({t for t in (*upload.keys(), *original.keys()) if t != PIXEL_TAG and t.element != 0})
    for tag in tags:
        a = original.get(tag)
        b = upload.get(tag)
        if a is not None and b is not None:
            if not _same(a, b):
                changes.append(AttributeChange(_tag_text(tag), _name(a), "changed", _shown(a), _shown(b)))
        elif a is not None:
            changes.append(AttributeChange(_tag_text(tag), _name(a), "removed", _shown(a), ""))
        elif b is not None:
            changes.append(AttributeChange(_tag_text(tag), _name(b), "added", "", _shown(b)))
    return changes


def _pixels(upload: Dataset, original: Dataset, ts_changed: bool) -> tuple[str, float | None]:
    has_a, has_b = PIXEL_TAG in original, PIXEL_TAG in upload
    if not has_a and not has_b:
        return "none", None
    if has_a != has_b:
        return "changed", None
    if not ts_changed and original[PIXEL_TAG].value == upload[PIXEL_TAG].value:
        return "same", None
    try:
        import numpy as np

        arr_a, arr_b = original.pixel_array, upload.pixel_array
    except Exception:  # noqa: BLE001 - any decoder failure means "we cannot tell", not a crash
        return ("unknown" if ts_changed else "changed"), None
    if arr_a.shape != arr_b.shape:
        return "changed", None
    if np.array_equal(arr_a, arr_b):
        return "same_picture", None
    fraction = float(np.count_nonzero(arr_a != arr_b)) / float(arr_a.size or 1)
    return "changed", fraction


def diff_files(upload_file: IO[bytes], original_file: IO[bytes]) -> Difference:
    """How ``upload_file`` differs from ``original_file`` (both DICOM, same SOP Instance UID)."""
    try:
        upload = _read(upload_file, pixels=True)
        original = _read(original_file, pixels=True)
        ts_a = str(getattr(original.file_meta, "TransferSyntaxUID", "") if hasattr(original, "file_meta") else "")
        ts_b = str(getattr(upload.file_meta, "TransferSyntaxUID", "") if hasattr(upload, "file_meta") else "")
        changes = _header_changes(upload, original)
        pixels, fraction = _pixels(upload, original, ts_a != ts_b)
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily: a hostile one raises while comparing
        raise CompareError(str(exc)[:200]) from exc
    finally:
        upload_file.seek(0)
    return Difference(
        changes=changes[:MAX_CHANGES],
        more_changes=max(0, len(changes) - MAX_CHANGES),
        pixels=pixels,
        pixels_changed_fraction=fraction,
        transfer_syntax_changed=ts_a != ts_b,
    )


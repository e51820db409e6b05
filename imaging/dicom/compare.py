"""Comparing a file a patient holds with the original on record ("Verify a copy").

Two steps, both free of database access so they can be tested on plain files:

- :func:`inspect_upload` fingerprints an uploaded file (SHA-256 over every byte) and, if it is
  DICOM, reads the identifiers needed to find the original (SOP Instance, Series, Study UIDs).
- :func:`diff_files` says how a file differs from the original: which header attributes were
  changed, added or removed, and whether the pixels are the same (byte for byte, or the same
  picture re-encoded) or changed.

Uploads are untrusted pixels (docs/security.md §21): before anything is decoded, the upload's
header is checked with :mod:`imaging.dicom.limits` against the lower of ``DICOM_MAX_DECODED_BYTES``
and ``VERIFY_COPY_MAX_DECODED_BYTES``, one frame against :data:`MAX_COMPARE_FRAME_BYTES`, its
pixel data against its header, and every JPEG frame's own size claim; a deflated upload must
inflate to at most :data:`MAX_INFLATED_BYTES`. All the files of one check share one
:class:`DecodeBudget` of ``VERIFY_COPY_MAX_DECODED_BYTES``. Pictures are compared a frame at a
time (``pydicom.pixels.iter_pixels``), each pair freed before the next is decoded, so memory holds
the two files as uploaded and stored plus two decoded frames, whatever the frame count.

The caller (``imaging.selectors``) decides which originals a patient may be compared with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from django.conf import settings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imaging.dicom import limits
from imaging.dicom.parse import acceptable_uid

PIXEL_TAG = 0x7FE00010
# Listing hundreds of changed attributes helps nobody; the count says how many more.
MAX_CHANGES = 40
MAX_VALUE_CHARS = 80
_CHUNK = 1024 * 1024
# All the pictures one check decodes, when VERIFY_COPY_MAX_DECODED_BYTES is absent: as much as one
# request may upload (imaging.forms.MAX_TOTAL_BYTES), half of what the import decodes for one file.
# A CD's CT series (512 x 512 x 2 bytes a slice) is 50 slices in 25 MB; a 200-frame ultrasound
# loop (640 x 480 RGB) is 184 MB. Decoding costs CPU time even in bounded memory; a patient's
# request should not take the server's for minutes.
DEFAULT_VERIFY_MAX_DECODED_BYTES = 256 * 1024**2
# One decoded frame of an upload: decoding a frame takes about three times its size while the
# decoder works (a 64 MiB RLE frame raised a process by 178 MB, measured here), and two frames are
# alive at once (the upload's and the original's). 32 MiB keeps a check under 200 MB and still
# takes a 4096 x 4096 16-bit radiograph.
MAX_COMPARE_FRAME_BYTES = 32 * 1024**2
# A deflated upload is inflated whole by pydicom: at most as large as an uncompressed upload may
# be (imaging.forms.MAX_FILE_BYTES), or a 64 MB file of zeros would become 60 GB.
MAX_INFLATED_BYTES = 64 * 1024**2
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


class CompareError(Exception):
    """One of the files could not be read well enough to compare."""


@dataclass
class DecodeBudget:
    """The decoded bytes one Verify a copy check may still spend on comparing pictures. One per
    request (``imaging.selectors.copies_compare``), shared by its files in order."""

    total: int
    used: int = 0

    @classmethod
    def for_request(cls) -> DecodeBudget:
        return cls(int(getattr(settings, "VERIFY_COPY_MAX_DECODED_BYTES", DEFAULT_VERIFY_MAX_DECODED_BYTES)))

    @property
    def remaining(self) -> int:
        return max(self.total - self.used, 0)


@dataclass
class UploadFacts:
    sha256: str
    size: int
    is_dicom: bool
    sop_uid: str = ""
    series_uid: str = ""
    study_uid: str = ""
    reason: str = ""  # why it is not read: not_dicom, no_identifier, too_large (deflated past MAX_INFLATED_BYTES)


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
    # "same", "same_picture" (re-encoded), "changed", "unknown", "none"; not compared (nothing was
    # decoded): "too_large" (past the limits), "over_budget" (the check's other files used the
    # budget), "unreadable" (the pixel header or data is not an image: pixels_reason says why).
    pixels: str = "same"
    pixels_changed_fraction: float | None = None
    transfer_syntax_changed: bool = False
    pixels_reason: str = ""  # too_large, unreadable: the sentence from imaging.dicom.limits
    pixels_limit_bytes: int | None = None  # over_budget: the check's budget

    @property
    def pixels_compared(self) -> bool:
        return self.pixels not in ("too_large", "over_budget", "unreadable")

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


def _read(fileobj: IO[bytes], *, pixels: bool, upload: bool = True) -> Dataset:
    """A DICOM Part 10 file, or a bare dataset that at least names its SOP instance. An upload
    that is a deflated dataset must inflate to at most ``MAX_INFLATED_BYTES`` (raises
    ``limits.PixelsTooLarge``) before pydicom inflates it whole."""
    if upload:
        limits.check_inflated_size(fileobj, limit=MAX_INFLATED_BYTES)
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
    except limits.PixelLimitError:
        fileobj.seek(0)
        return UploadFacts(digest, size, False, reason="too_large")
    except Exception:  # noqa: BLE001 - pydicom raises many types on hostile input
        fileobj.seek(0)
        return UploadFacts(digest, size, False, reason="not_dicom")
    try:
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


@dataclass
class _Pixels:
    pixels: str
    fraction: float | None = None
    reason: str = ""
    limit: int | None = None


def _pixels(upload: Dataset, original: Dataset, ts_changed: bool, budget: DecodeBudget) -> _Pixels:
    has_a, has_b = PIXEL_TAG in original, PIXEL_TAG in upload
    if not has_a and not has_b:
        return _Pixels("none")
    if has_a != has_b:
        return _Pixels("changed")
    if not ts_changed and original[PIXEL_TAG].value == upload[PIXEL_TAG].value:
        return _Pixels("same")
    # docs/security.md §21: nothing of the upload is decoded before these checks.
    try:
        upload_size = limits.check_decoded_size(
            upload, limit=min(limits.max_decoded_bytes(), budget.total), frame_limit=MAX_COMPARE_FRAME_BYTES)
        limits.check_pixel_data(upload, upload_size)
        limits.check_codestreams(upload, upload_size)
    except limits.PixelsTooLarge as exc:
        return _Pixels("too_large", reason=exc.reason)
    except limits.PixelLimitError as exc:
        return _Pixels("unreadable", reason=exc.reason)
    try:
        original_size = limits.check_decoded_size(original)
    except limits.PixelLimitError:
        return _Pixels("unknown" if ts_changed else "changed")
    if original_size.shape != upload_size.shape:
        return _Pixels("changed")  # another number of frames, rows, columns or samples
    if upload_size.decoded_bytes > budget.remaining:
        return _Pixels("over_budget", limit=budget.total)
    budget.used += upload_size.decoded_bytes
    try:
        return _compare_frames(original, upload)
    except Exception:  # noqa: BLE001 - any decoder failure means "we cannot tell", not a crash
        return _Pixels("unknown" if ts_changed else "changed")


def _compare_frames(original: Dataset, upload: Dataset) -> _Pixels:
    """Decode both pictures a frame at a time and count differing values; a pair of frames is
    freed before the next is decoded."""
    import numpy as np
    from pydicom.pixels import iter_pixels

    frames_a: Any = iter_pixels(original)
    frames_b: Any = iter_pixels(upload)
    differing = total = 0
    try:
        for arr_a in frames_a:
            arr_b = next(frames_b)
            if arr_a.shape != arr_b.shape:
                return _Pixels("changed")
            # Row blocks: the comparison's own boolean array stays small too.
            for start in range(0, arr_a.shape[0], 256):
                differing += int(np.count_nonzero(arr_a[start:start + 256] != arr_b[start:start + 256]))
            total += arr_a.size
            del arr_a, arr_b
    finally:
        frames_a.close()
        frames_b.close()
    if differing == 0:
        return _Pixels("same_picture")
    return _Pixels("changed", float(differing) / float(total or 1))


def diff_files(upload_file: IO[bytes], original_file: IO[bytes], *, budget: DecodeBudget | None = None) -> Difference:
    """How ``upload_file`` differs from ``original_file`` (both DICOM, same SOP Instance UID).

    ``budget``: what the caller's check may still decode (one per request, shared by its files);
    a budget of ``VERIFY_COPY_MAX_DECODED_BYTES`` for this file alone when not given. Pixels past
    the limits are not decoded: ``Difference.pixels`` says so and the header is still compared."""
    budget = budget if budget is not None else DecodeBudget.for_request()
    try:
        upload = _read(upload_file, pixels=True)
        original = _read(original_file, pixels=True, upload=False)
        ts_a = str(getattr(original.file_meta, "TransferSyntaxUID", "") if hasattr(original, "file_meta") else "")
        ts_b = str(getattr(upload.file_meta, "TransferSyntaxUID", "") if hasattr(upload, "file_meta") else "")
        changes = _header_changes(upload, original)
        pixels = _pixels(upload, original, ts_a != ts_b, budget)
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily: a hostile one raises while comparing
        raise CompareError(str(exc)[:200]) from exc
    finally:
        upload_file.seek(0)
    return Difference(
        changes=changes[:MAX_CHANGES],
        more_changes=max(0, len(changes) - MAX_CHANGES),
        pixels=pixels.pixels,
        pixels_changed_fraction=pixels.fraction,
        transfer_syntax_changed=ts_a != ts_b,
        pixels_reason=pixels.reason,
        pixels_limit_bytes=pixels.limit,
    )


"""De-identified copies: DICOM PS3.15 Table E.1-1, applied by Lightbox, attribute by attribute.

Called by the export packager (``exports/packaging.py``), which makes one :class:`Deidentifier`
per archive and hands it each stored file in turn; nothing is audited here (the export service
records the export). Every decision comes from :mod:`imaging.dicom.ps315` (the table generated
from the standard's machine-readable editions); nothing here lists identifying attributes by hand.

Why not a library: the de-identifier used before invented realistic fake people and clinics
("MCMAHON^MARYANNE^BRITTANY"), which alarmed patients opening their own copy, and it kept
DeviceSerialNumber, PatientSex, station names, overlays and more in patients' copies. dicom-anonymizer
applies the Basic Profile only, with no option columns, no declaration of what was done and no
per-archive keyed UIDs. Both are used as independent checks instead: the table is compared with
dicom-anonymizer's database in ``tests/imaging/test_ps315.py``; see docs/deidentification.md.

What a copy gets (:data:`PATIENT_COPY_OPTIONS` is the product decision):

- Every Basic Profile action at every nesting level (compound codes resolved in ``_RESOLVED``),
  with neutral, obviously replaced values: "ANONYMOUS" for names, "ANONYMIZED" for text.
- Retain Longitudinal Temporal Information with Modified Dates (113107): every date is moved back
  by one per-archive number of days, so intervals between scans survive; times of day (TM) follow the Basic Profile (removed or emptied).
- UIDs replaced by ``2.25.<UUID from HMAC-SHA256(archive seed, UID)>``: the same inside one
  archive (references still match), unlinkable across archives.
- Private attributes, curves (50xx) and overlays (60xx) removed whole; file meta rebuilt.
- Text regions found by OCR masked in the pixels (113101, only for files that were masked).
- PatientIdentityRemoved, DeidentificationMethod and its code sequence say exactly that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import re
import secrets
import tempfile
import uuid
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import pydicom
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from imaging.dicom import ps315

# The product decision for a patient's copy (explained by describe_options()): dates kept as
# intervals, nothing else retained. Retain Patient Characteristics / Device Identity /
# Institution Identity / UIDs / Safe Private are deliberately absent: sex, serial numbers and
# station names kept in a patient's copy were defects of the de-identifier used before.
PATIENT_COPY_OPTIONS: tuple[str, ...] = ("retain_long_modified_dates",)
MODIFIED_DATES = "retain_long_modified_dates"
CLEAN_PIXEL_DATA = "clean_pixel_data"

PERSON = "ANONYMOUS"  # PN: a word no one is named, never a realistic fake person
TEXT = "ANONYMIZED"  # every other text VR; 10 characters fit SH, CS and AE (16 max)
IMPLEMENTATION_VERSION = "LIGHTBOX"  # SH, 16 max

# Dates move back by 1 to 10 years: at least a year so neither the year nor the day of the year
# of a scan survives, at most ten so shifted dates stay plausible for a viewer.
SHIFT_DAYS = (366, 3652)

# Compound codes let the de-identifier choose by the attribute's Type in its IOD, which one file
# does not tell reliably (the same attribute is Type 1 in one module and 3 in another). We choose
# what keeps every file valid whatever the Type, saying the least that allows it: Z (present,
# empty) rather than X where the code offers Z; D (a neutral dummy) wherever it is offered, since
# removing or emptying a Type 1 attribute would break the file; and for the UID-reference
# sequences (X/Z/U*) U: the items stay, their UIDs are replaced and everything else inside is
# handled by its own row.
_RESOLVED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UR", "AE", "CS"})
_FREE_TEXT_VRS = _TEXT_VRS - {"CS"}  # CS holds defined terms, never free text
_NUMBER_VRS = frozenset({"IS", "DS"})
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
# The only file meta elements a copy keeps; the rest (AE titles, presentation addresses, private
# information) describe where the file came from.
_META_KEPT = ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "TransferSyntaxUID")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?([0-9.]*)(?:[+-]\d{4})?")


class DeidentificationFailed(Exception):
    """One file could not be de-identified. ``reason`` names the step and the error type, never a
    value from the file, so the exporter can show it and log it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DeidentifiedFile:
    """A de-identified Part 10 file spooled to a temporary file (seekable, at position 0)."""

    file: IO[bytes]
    burned_in_annotation: bool  # what the ORIGINAL header's BurnedInAnnotation said
    original_sop_uid: str
    sop_uid: str
    pixel_sha256: str  # of the copy's Pixel Data value bytes; "" without Pixel Data
    pixels_masked: bool
    options: tuple[str, ...]  # ps315.OPTIONS keys applied to this file


def describe_options() -> list[Promise]:
    """Plain sentences for the export page and the archive's README: what a copy keeps and
    what it changes. Kept next to PATIENT_COPY_OPTIONS so the two cannot drift apart."""
    return [
        _("Your name, ID numbers, addresses, doctors' names, institution, device serial numbers, station names, "
          "descriptions and comments are removed, or replaced by the words ANONYMOUS or ANONYMIZED, following the "
          "DICOM standard's Basic Application Confidentiality Profile (PS3.15 Table E.1-1)."),
        _("Your sex, age, height and weight and your birth date are removed."),
        _("Every date is moved back by the same number of days (between one and ten years) in all files of this "
          "copy, so the time between your scans is kept; times of day are removed."),
        _("Study, series and image identifiers are replaced by new ones that match each other inside this copy "
          "only: two copies cannot be linked to each other or to the original by them."),
        _("Manufacturer-specific (private) data, overlays and curves are removed."),
        _("Where text was found in the pixels of an image it is blacked out; the README lists those files and "
          "the images that could not be checked."),
    ]


class Deidentifier:
    """De-identifies the instances of one archive with one key: consistent inside the archive,
    unlinkable across archives (a fresh random seed per archive)."""

    # Up to this size a de-identified file is kept in memory, bigger ones go to disk.
    SPOOL_BYTES = 16 * 1024 * 1024

    def __init__(self, seed: str | None = None) -> None:
        # 32 random bytes: the HMAC key behind every replaced UID and the date shift of one archive.
        self._key = (seed or secrets.token_hex(32)).encode("utf-8")
        span = SHIFT_DAYS[1] - SHIFT_DAYS[0] + 1
        draw = int.from_bytes(hmac.new(self._key, b"date shift", hashlib.sha256).digest()[:8], "big")
        self.shift = dt.timedelta(days=SHIFT_DAYS[0] + draw % span)
        self.options = PATIENT_COPY_OPTIONS

    def uid(self, original: str) -> str:
        """The replacement of one UID: a UUID-derived UID (PS3.5 B.2) keyed by the archive's seed."""
        text = str(original).strip().rstrip("\0")
        if not text:
            return text
        digest = hmac.new(self._key, text.encode("utf-8", "replace"), hashlib.sha256).digest()
        # 16 bytes make a version-4 UUID (122 keyed bits: no collision in any archive); 2.25.<int>
        # is at most 44 characters, well inside UI's 64.
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def deidentify(self, source: BinaryIO, *, text_regions: list[dict] | None = None) -> DeidentifiedFile:
        """Read one Part 10 file and return its de-identified copy.

        One instance is read at a time; its pixels are decoded only when ``text_regions`` (frame
        index from 0, box [x, y, w, h]) ask for masking, one frame at a time. Raises
        :class:`DeidentificationFailed` for any file that cannot be read, cleaned or written.
        """
        step = "read the file"
        ds: Dataset | None = None
        try:
            ds = pydicom.dcmread(source)
            step = "clean the header"
            original = str(ds.get("SOPInstanceUID", "") or ds.file_meta.get("MediaStorageSOPInstanceUID", "")).strip()
            if not original:
                raise DeidentificationFailed("the file has no SOP Instance UID")
            burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
            options = list(self.options)
            digest = None
            if text_regions:
                step = "mask the pixels"
                from imaging.dicom.deidentify_pixels import mask_regions

                digest = mask_regions(ds, text_regions)
                if digest is not None:
                    options.append(CLEAN_PIXEL_DATA)
                    ds.BurnedInAnnotation = "NO"
            step = "clean the header"
            self._clean(ds, strict=False)
            ds.SOPInstanceUID = self.uid(original)
            _declare(ds, options)
            _rebuild_meta(ds)
            if digest is None:
                digest = _stream_pixels(ds)
            step = "write the copy"
            out = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
            ds.preamble = b"\0" * 128  # a preamble can carry a whole TIFF header (dual-personality files)
            pydicom.dcmwrite(out, ds, enforce_file_format=True)
            out.seek(0)
        except DeidentificationFailed:
            raise
        except Exception as exc:  # one bad file must fail with a reason, never with pydicom's text
            raise DeidentificationFailed(f"could not {step} ({type(exc).__name__})") from exc
        finally:
            if ds is not None:
                _close_buffer(ds)
        return DeidentifiedFile(file=out, burned_in_annotation=burned_in, original_sop_uid=original,
                                sop_uid=str(ds.SOPInstanceUID), pixel_sha256=digest, pixels_masked=CLEAN_PIXEL_DATA in options,
                                options=tuple(options))

    # --- the table, applied -----------------------------------------------------------------

    def _clean(self, ds: Dataset, *, strict: bool) -> None:
        """Apply the table to every element of ``ds`` and, through sequences, every nesting level.
        ``strict`` (inside a sequence whose action is D) also neutralises the free text the table
        does not list, since D replaces the sequence's content with dummy content."""
        for tag in list(ds.keys()):
            if tag.is_private or tag.element == 0 or tag.group in (0x0000, 0x0002) or ps315.in_curve_or_overlay(tag):
                # Private attributes (X, no safe-private list), curves and overlays whole, group
                # lengths (retired, and wrong once anything changed), and command or file meta
                # elements misplaced in the data set (the meta group is rebuilt on its own).
                del ds[tag]
                continue
            elem = ds[tag]
            rule = ps315.rule_for(tag)
            if rule is None:  # not an identifying attribute: kept, its sequences still walked
                if elem.VR == "SQ":
                    self._items(elem, strict=strict)
                elif strict or elem.VR == "PN":
                    # A name is a name even where the table forgot it (DICONDE's EvaluatorName,
                    # SecondaryReviewerName, the retired DocumentAuthorTrial).
                    _neutral(elem)
                continue
            self._apply(ds, elem, rule, strict=strict)

    def _items(self, elem: DataElement, *, strict: bool) -> None:
        for item in elem.value or ():
            self._clean(item, strict=strict)

    def _apply(self, ds: Dataset, elem: DataElement, rule: ps315.Rule, *, strict: bool) -> None:
        action = rule.action(self.options)
        vr = elem.VR
        if action == "C":
            if vr in ("DA", "DT"):
                elem.value = self._shifted(elem)
                return
            # TM falls through to the Basic Profile too: dates move by whole days, so a kept time
            # of day would still be the true one, and with the hour of a visit a shifted date can
            # be matched back to the hospital's appointment schedule.
            # C has no meaning we could apply to this VR (TimezoneOffsetFromUTC, binary timestamps):
            # the Basic Profile's action, never less than the profile.
            action = rule.basic
        action = _RESOLVED.get(action, action)
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if vr == "SQ" else empty_value_for_VR(vr)
        elif action == "D":
            self._dummy(elem)
        elif action == "U" and vr == "SQ":
            self._items(elem, strict=strict)
        elif action == "U" and vr == "UI":
            elem.value = [self.uid(v) for v in _texts(elem)] if elem.VM > 1 else self.uid(str(elem.value or ""))
        elif action == "U":
            self._dummy(elem)  # a UID attribute read with another VR (UN): nothing to map, replace it
        elif vr == "SQ":  # K
            self._items(elem, strict=strict)

    def _dummy(self, elem: DataElement) -> None:
        """D: a neutral value of the element's VR that is obviously not the original."""
        vr = elem.VR
        if vr == "SQ":
            self._items(elem, strict=True)
        elif vr == "PN":
            elem.value = PERSON
        elif vr in _TEXT_VRS:
            elem.value = TEXT
        elif vr == "AS":
            elem.value = "000D"
        elif vr in ("DA", "DT"):
            elem.value = self._shifted(elem) or ("19000101" if vr == "DA" else "19000101000000")
        elif vr == "TM":
            elem.value = "000000"
        elif vr == "UI":
            elem.value = self.uid(str(elem.value or "")) or self.uid("dummy")
        elif vr in _NUMBER_VRS:
            elem.value = "0"
        elif vr in _BINARY_NUMBER_VRS:
            elem.value = 0
        elif vr in _BYTES_VRS:
            elem.value = bytes(len(elem.value or b""))  # same length, all zero: fixed-size structures stay valid
        else:
            elem.value = empty_value_for_VR(vr)

    # --- dates ------------------------------------------------------------------------------

    def _shifted(self, elem: DataElement) -> Any:
        """DA and DT values moved back by the archive's shift; a value that is not a date
        becomes empty (it cannot be kept, and there is nothing to shift)."""
        shift = self._shift_da if elem.VR == "DA" else self._shift_dt
        values = [shift(v) for v in _texts(elem)]
        return values if len(values) > 1 else (values[0] if values else "")

    def _shift_da(self, value: str) -> str:
        value = value.strip()
        if "-" in value:  # a range (query context)
            return "-".join(self._shift_da(part) if part else "" for part in value.split("-", 1))
        if len(value) == 10 and value[4] == value[7] == ".":  # ACR-NEMA's YYYY.MM.DD
            value = value.replace(".", "")
        try:
            day = dt.datetime.strptime(value, "%Y%m%d").date() - self.shift
        except (ValueError, OverflowError):
            return ""
        return f"{day.year:04d}{day.month:02d}{day.day:02d}"

    def _shift_dt(self, value: str) -> str:
        """The date part moved, the time of day kept, the UTC offset dropped (an offset says
        where the scan was made; TimezoneOffsetFromUTC is removed for the same reason)."""
        m = _DT.fullmatch(value.strip())
        if not m:
            return ""
        year, month, day, time = m.groups()
        try:
            moved = dt.date(int(year), int(month or 1), int(day or 1)) - self.shift
        except (ValueError, OverflowError):
            return ""
        text = f"{moved.year:04d}" + (f"{moved.month:02d}" if month else "") + (f"{moved.day:02d}" if day else "")
        return text + (time if day else "")


def _texts(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _neutral(elem: DataElement) -> None:
    """Inside a D sequence: free text the table does not list is replaced too (codes' meanings,
    SR text values), while structure (CS, UIDs of classes, numbers) stays so the file is valid."""
    if not _texts(elem) and not isinstance(elem.value, bytes):
        return
    if elem.VR == "PN":
        elem.value = PERSON
    elif elem.VR in _FREE_TEXT_VRS:
        elem.value = TEXT
    elif elem.VR == "UN" and elem.value:
        elem.value = bytes(len(elem.value))


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def method_text() -> str:
    """The De-identification Method (LO, 64 characters at most) written into every copy."""
    return f"Lightbox PS3.15 E.1-1 {ps315.table().editions}"[:64]


def _declare(ds: Dataset, options: list[str]) -> None:
    """PS3.15 E.1.1: say exactly what was done, with PS3.16 CID 7050 codes."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_text()
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code(*ps315.BASIC_PROFILE)] + [_code(*ps315.OPTIONS[o]) for o in options])
    if MODIFIED_DATES in options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _rebuild_meta(ds: Dataset) -> None:
    """A new file meta group: the class and transfer syntax, the new instance UID, and Lightbox as
    the implementation; nothing about where the file came from."""
    old = ds.file_meta
    meta = FileMetaDataset()
    for keyword in _META_KEPT:
        if keyword in old:
            setattr(meta, keyword, old[keyword].value)
    if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta


def _stream_pixels(ds: Dataset) -> str:
    """The SHA-256 of the Pixel Data value, which is handed to pydicom as a buffer: pydicom copies
    a bytes value twice while writing it (into a buffer, then out of it) but streams a buffered
    one, so a copy takes about one file's size in memory instead of three."""
    if "PixelData" not in ds:
        return ""
    element = ds["PixelData"]
    pixels = element.value
    if element.VR in ("OB", "OW") and isinstance(pixels, bytes) and len(pixels) % 2 == 0:
        element.value = io.BytesIO(pixels)  # shares the bytes, no copy
    return hashlib.sha256(pixels).hexdigest()


def _close_buffer(ds: Dataset) -> None:
    if "PixelData" in ds and ds["PixelData"].is_buffered:
        ds["PixelData"].value.close()


def pixel_sha256_of(source: BinaryIO) -> str:
    """SHA-256 of a file's Pixel Data value bytes, as :attr:`DeidentifiedFile.pixel_sha256` took
    them (for "Verify a copy"); "" without Pixel Data."""
    ds = pydicom.dcmread(source, specific_tags=["PixelData"])
    return hashlib.sha256(ds.PixelData).hexdigest() if "PixelData" in ds else ""


def header(source: BinaryIO) -> Any:
    """The header of a Part 10 file without its pixel data (for DICOMDIR records)."""
    return pydicom.dcmread(source, stop_before_pixels=True)

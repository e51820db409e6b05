"""A radiology report stored as DICOM, read for the patient: a Structured Report's content tree
as headings and findings, or an Encapsulated PDF's document.

Called by ``imaging.selectors.study_reports`` / ``document_pdf`` with a stored file. Everything
returned is plain text or bytes from an untrusted file: templates escape the text, and the PDF
is served with its own content type and a CSP of its own (``imaging.views.document_pdf``).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# A report is a few pages; these bound what one page renders from a hostile file.
MAX_ITEMS = 500
MAX_DEPTH = 8
MAX_TEXT_CHARS = 20_000
# PDF reports are kilobytes to a few megabytes; ingest already bounds the stored file's size.
MAX_PDF_BYTES = 50 * 1024 * 1024


@dataclass
class Item:
    label: str  # the concept name ("Finding"), "" when the item has none
    text: str
    show_label: bool = True  # False where it repeats its section's heading ("Finding" under "Findings")


@dataclass
class Section:
    heading: str  # "" for items before the first heading
    level: int  # 2 for the report's own sections, 3 and 4 below them
    items: list[Item] = field(default_factory=list)


@dataclass
class Report:
    kind: str  # "sr" or "pdf"
    title: str
    sections: list[Section] = field(default_factory=list)
    complete: bool | None = None  # Completion Flag (SR)
    verified: bool | None = None  # Verification Flag (SR)
    observer: str = ""  # the verifying observer (the radiologist who signed it)
    date: dt.date | None = None  # content date
    truncated: bool = False  # more items than MAX_ITEMS: the rest is not shown


def _read(source: str | IO[bytes], *, pixels: bool) -> Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(source, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None


def _meaning(item: Dataset, keyword: str) -> str:
    seq = item.get(keyword)
    if seq and len(seq) and "CodeMeaning" in seq[0]:
        return _clean(seq[0].CodeMeaning)
    return ""


def _clean(value: Any) -> str:
    text = str(value if value is not None else "")
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t").strip()
    return text[:MAX_TEXT_CHARS]


def _iso_date(value: Any) -> str:
    text = str(value or "").strip()
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) >= 8 and text[:8].isdigit() else ""


def _date_of(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(_iso_date(value))
    except ValueError:
        return None


def _person(value: Any) -> str:
    if not value:
        return ""
    try:
        name = pydicom.valuerep.PersonName(value)
        parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name, name.name_suffix]
        return _clean(" ".join(p for p in parts if p)) or _clean(value)
    except Exception:  # noqa: BLE001 - a malformed name is shown as written
        return _clean(value)


def _value(item: Dataset) -> str:
    vt = str(item.get("ValueType", ""))
    if vt == "TEXT":
        return _clean(item.get("TextValue", ""))
    if vt == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if vt == "NUM" and item.get("MeasuredValueSequence"):
        measured = item.MeasuredValueSequence[0]
        unit = _meaning(measured, "MeasurementUnitsCodeSequence")
        return _clean(f"{measured.get('NumericValue', '')} {unit if unit not in ('no units', '1') else ''}")
    if vt == "DATE":
        return _iso_date(item.get("Date", ""))
    if vt == "DATETIME":
        return _iso_date(item.get("DateTime", ""))
    if vt == "PNAME":
        return _person(item.get("PersonName", ""))
    if vt == "UIDREF":
        return ""  # identifiers mean nothing to a reader
    return ""


def read_report(source: str | IO[bytes]) -> Report | None:
    """The report in a DICOM file (path or binary stream): a Structured Report's content as
    sections of labelled text, or an Encapsulated PDF's title (its bytes: ``read_pdf``). None
    when the file is neither or cannot be read."""
    ds = _read(source, pixels=False)
    if ds is None:
        return None
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == ENCAPSULATED_PDF:
        return Report("pdf", _clean(ds.get("DocumentTitle", "")) or "Report (PDF)", date=_date_of(ds.get("ContentDate")))
    if not sop_class.startswith(_SR_PREFIX):
        return None
    report = Report(
        "sr",
        _meaning(ds, "ConceptNameCodeSequence") or "Report",
        complete={"COMPLETE": True, "PARTIAL": False}.get(str(ds.get("CompletionFlag", "")).upper()),
        verified={"VERIFIED": True, "UNVERIFIED": False}.get(str(ds.get("VerificationFlag", "")).upper()),
        date=_date_of(ds.get("ContentDate")),
    )
    observers = ds.get("VerifyingObserverSequence")
    if observers:
        report.observer = _person(observers[0].get("VerifyingObserverName", ""))
    count = 0

    def walk(items: Any, depth: int) -> None:
        nonlocal count
        for item in items or []:
            if count >= MAX_ITEMS:
                report.truncated = True
                return
            count += 1
            concept = _meaning(item, "ConceptNameCodeSequence")
            if str(item.get("ValueType", "")) == "CONTAINER":
                report.sections.append(Section(concept, min(2 + depth, 4)))
            else:
                text = _value(item)
                if text:
                    if not report.sections:
                        report.sections.append(Section("", 2))
                    report.sections[-1].items.append(Item(concept, text))
            if "ContentSequence" in item and depth < MAX_DEPTH:
                walk(item.ContentSequence, depth + 1)

    walk(ds.get("ContentSequence"), 0)
    report.sections = [s for s in report.sections if s.items or s.heading]
    for section in report.sections:
        heading = section.heading.lower()
        for item in section.items:
            item.show_label = bool(item.label) and item.label.lower() not in (heading, heading.removesuffix("s"))
    return report


def read_pdf(source: str | IO[bytes]) -> bytes | None:
    """The PDF document of an Encapsulated PDF file, or None (another kind of file, a document
    that is not a PDF, or one larger than ``MAX_PDF_BYTES``)."""
    ds = _read(source, pixels=True)
    if ds is None or str(ds.get("SOPClassUID", "")) != ENCAPSULATED_PDF:
        return None
    if str(ds.get("MIMETypeOfEncapsulatedDocument", "")).strip().lower() != "application/pdf":
        return None
    data = ds.get("EncapsulatedDocument")
    if not isinstance(data, bytes) or len(data) > MAX_PDF_BYTES:
        return None
    # DICOM pads a value to an even length with one NUL; the PDF itself ends before it.
    if len(data) % 2 == 0 and data.endswith(b"\x00"):
        data = data[:-1]
    return data if data.startswith(b"%PDF-") else None

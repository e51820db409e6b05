"""Kinds of object (image, report, document, ...) and the text of simple structured reports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from imaging.dicom.reveal.report import _fmt_date, _fmt_person

# --- Kinds of object and simple structured reports ---------------------------------------------

_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_KIND_PREFIXES = [
    ("1.2.840.10008.5.1.4.1.1.104.", "document"),  # encapsulated PDF / CDA / STL
    (_SR_PREFIX, "report"),
    ("1.2.840.10008.5.1.4.1.1.481.", "radiotherapy"),
    ("1.2.840.10008.5.1.4.1.1.9.", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.11.", "presentation"),
    ("1.2.840.10008.5.1.4.1.1.66", "other"),  # raw data, registration, segmentation surfaces
]


def object_kind(sop_class: str, *, has_pixels: bool = True) -> str:
    """'image' or the kind of non-image object ('report', 'document', 'radiotherapy', ...)."""
    if sop_class == "1.2.840.10008.5.1.4.1.1.481.2" or sop_class == "1.2.840.10008.5.1.4.1.1.481.1":
        return "image"  # RT Dose and RT Image have pixels
    for prefix, kind in _KIND_PREFIXES:
        if sop_class.startswith(prefix):
            return kind
    return "image" if has_pixels else "other"


def sop_class_name(sop_class: str) -> str:
    name = UID(sop_class).name
    return name.removesuffix(" Storage") if name != sop_class else sop_class


# A report longer than this is not "simple": we point to the viewer of a clinical system.
SR_MAX_ITEMS = 60


def report_text(source: str | IO[bytes]) -> list[tuple[str, str]] | None:
    """(heading, text) pairs of a structured report's TEXT, CODE, NUM, DATE and PNAME items,
    depth-first, or None if the file is not a simple SR."""
    try:
        ds = pydicom.dcmread(source, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    if not str(ds.get("SOPClassUID", "")).startswith(_SR_PREFIX):
        return None
    out: list[tuple[str, str]] = []

    def meaning(item: Dataset, keyword: str) -> str:
        seq = item.get(keyword)
        if seq and len(seq) and "CodeMeaning" in seq[0]:
            return str(seq[0].CodeMeaning)
        return ""

    def walk(items: Iterable[Dataset]) -> None:
        for item in items:
            if len(out) >= SR_MAX_ITEMS:
                return
            vt = str(item.get("ValueType", ""))
            heading = meaning(item, "ConceptNameCodeSequence")
            text = ""
            if vt == "TEXT":
                text = str(item.get("TextValue", ""))
            elif vt == "CODE":
                text = meaning(item, "ConceptCodeSequence")
            elif vt == "NUM" and item.get("MeasuredValueSequence"):
                mv = item.MeasuredValueSequence[0]
                unit = meaning(mv, "MeasurementUnitsCodeSequence")
                text = f"{mv.get('NumericValue', '')} {unit}".strip()
            elif vt == "DATE":
                text = _fmt_date(str(item.get("Date", "")))
            elif vt == "PNAME":
                text = _fmt_person(item.get("PersonName", ""))
            elif vt == "CONTAINER" and heading:
                out.append((heading, ""))
            if text:
                out.append((heading, text))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    title = meaning(ds, "ConceptNameCodeSequence")
    if title:
        out.append((title, ""))
    walk(ds.get("ContentSequence", []))
    return out

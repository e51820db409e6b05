"""What a DICOM file says about the person in it ("What this scan reveals").

Reads headers only (``stop_before_pixels``) and reports, per attribute, the values found and in
how many files of each series. Which attributes count comes from one source of truth, DICOM
PS3.15 Table E.1-1 (:mod:`imaging.dicom.ps315`, the table de-identification reads too): every
element whose tag has a row there is reported, at any nesting level, inside private sequences
too, with the file meta. Attributes are grouped for a patient, not for a DICOM engineer: who
you are, how to reach you, record numbers, health details, where you were scanned, staff named,
the scanner, dates and times, free text, unique identifiers, overlays and curves,
manufacturers' private data, text on the image itself and faces.

:data:`ATTRIBUTES` gives plain labels (and a group) to the attributes a patient would
recognise; it is a list of labels, not of what counts. A table row without a curated label is
placed by :func:`group_for_rule` from its value representation and name, and labelled with the
table's attribute name. A few curated attributes the table keeps (manufacturer, model, software
versions, the file meta's sender) are reported too, and anything else that is a person name
(PN), a date or time (DA/DT/TM) or free text (LT/ST/UT) is still caught by its value
representation, so an unusual file cannot hide a name in an attribute the table forgot.

Private (manufacturer) elements are counted, never shown, except those that hold a person name
or the header's own patient name or ID: those are shown, because a tool removing the standard
attributes may leave them behind.

The report is a plain, JSON-serialisable dict (so it can be cached); :func:`present` turns it
into labelled, translated groups for a template, adding what the pixels show (OCR results) and
which series are head volumes, which the caller (``imaging.selectors``) passes in beside it.
"""

from __future__ import annotations

import pydicom as pydicom

from imaging.dicom.reveal.labels import (
    ATTRIBUTES,
    GROUPS,
    group_for_rule,
    label_for,
    label_for_rule,
)
from imaging.dicom.reveal.objects import SR_MAX_ITEMS, object_kind, report_text, sop_class_name
from imaging.dicom.reveal.pixels import MIN_PIXEL_TEXT, PIXEL_KINDS, PixelRow, pixel_summary
from imaging.dicom.reveal.present import Group, Item, present
from imaging.dicom.reveal.report import (
    MAX_PRIVATE_TEXT,
    MAX_TAGS,
    MAX_VALUE_CHARS,
    MAX_VALUES,
    REPORT_VERSION,
    VR_GROUPS,
    build_report,
    file_facts,
    read_header,
)

__all__ = [
    "ATTRIBUTES",
    "GROUPS",
    "MAX_PRIVATE_TEXT",
    "MAX_TAGS",
    "MAX_VALUES",
    "MAX_VALUE_CHARS",
    "MIN_PIXEL_TEXT",
    "PIXEL_KINDS",
    "REPORT_VERSION",
    "SR_MAX_ITEMS",
    "VR_GROUPS",
    "Group",
    "Item",
    "PixelRow",
    "build_report",
    "file_facts",
    "group_for_rule",
    "label_for",
    "label_for_rule",
    "object_kind",
    "pixel_summary",
    "present",
    "read_header",
    "report_text",
    "sop_class_name",
]

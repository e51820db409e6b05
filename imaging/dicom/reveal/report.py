"""Reading headers: what one file reveals, and the cached report over a study's files."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import IO, Any

import pydicom
from django.utils.translation import gettext_lazy as _
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imaging.dicom import ps315
from imaging.dicom.reveal.labels import ATTRIBUTES, group_for_rule

# 2: driven by PS3.15 Table E.1-1 (times, every UID, curves, overlays, private sequences, the
# file meta); entries carry the tags they came from. Cached reports of version 1 are ignored.
REPORT_VERSION = 2
# A long list of distinct values helps nobody; the count says there are more.
MAX_VALUES = 5
MAX_VALUE_CHARS = 120
# A private element longer than this is data, not a name or an ID typed into a field.
MAX_PRIVATE_TEXT = 1024

# Value representations that always matter, even for attributes the table does not list.
VR_GROUPS = {"PN": "people", "DA": "dates", "DT": "dates", "TM": "dates", "LT": "text", "ST": "text", "UT": "text"}
# In these, a PN is the patient's own name, not staff.
_PATIENT_SEQUENCES = {"OtherPatientIDsSequence", "PatientBreedCodeSequence", "ReferencedPatientAliasSequence"}
# Overlay elements that carry text (the table lists only 60xx,3000 and 60xx,4000 as rows, but
# an overlay's description and label are free text a viewer shows too).
_OVERLAY_TEXT = {0x0022: "OverlayDescription", 0x1500: "OverlayLabel", 0x4000: "OverlayComments"}
# Curve elements shown with their values; every other 50xx element is part of "a curve".
_CURVE_TEXT = {0x0022: "CurveDescription", 0x2500: "CurveLabel", 0x0040: "AxisLabels"}
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"}
# Entries keep at most this many of the tags they came from (a key is mostly one tag).
MAX_TAGS = 20


# --- Reading one file ---------------------------------------------------------------------------


@dataclass
class _Finding:
    group: str
    keyword: str
    tags: list[str]
    values: list[str] = field(default_factory=list)
    more: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    extra: set[str] = field(default_factory=set)  # distinct values beyond MAX_VALUES (not stored)


def _tag_text(tag: int) -> str:
    group, element = tag >> 16, tag & 0xFFFF
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
        # A repeating group: every curve or overlay is the same attribute.
        return f"({group >> 8:02X}xx,{element:04X})"
    return f"({group:04X},{element:04X})"


def _fmt_date(value: str) -> str:
    value = value.strip()
    try:
        return dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except (ValueError, IndexError):
        return value


def _fmt_time(value: str) -> str:
    value = value.strip().split(".")[0]
    parts = [value[i : i + 2] for i in range(0, min(len(value), 6), 2)]
    return ":".join(parts) if parts and all(p.isdigit() for p in parts) else value


def _fmt_person(value: Any) -> str:
    name = value if isinstance(value, pydicom.valuerep.PersonName) else pydicom.valuerep.PersonName(str(value))
    parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name, name.name_suffix]
    text = " ".join(p for p in parts if p)
    return text or str(value).replace("^", " ").strip()


def _bytes_text(value: bytes) -> str | None:
    """Text stored as bytes (an element of unknown VR), or None when it is binary data."""
    if not value or len(value) > MAX_PRIVATE_TEXT:
        return None
    text = value.rstrip(b"\0 ").decode("latin-1")
    return text if text and all(c.isprintable() or c in "\r\n\t" for c in text) else None


def _is_empty(element: DataElement) -> bool:
    """No value worth reporting: None, an empty string (or only separators), no bytes, no items."""
    value = element.value
    if value is None:
        return True
    if element.VR == "SQ":
        return len(value) == 0
    if isinstance(value, bytes | bytearray):
        return len(value) == 0
    if isinstance(value, str | pydicom.valuerep.PersonName):
        return not str(value).strip(" \0^=\\")
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return all(v is None or not str(v).strip(" \0^=\\") for v in value)
    return False


def _format(element: DataElement) -> list[str]:
    """Human-readable values of one element; [] when empty or binary."""
    value = element.value
    if value is None or value == "" or element.VR == "SQ":
        return []
    if isinstance(value, bytes | bytearray):
        text = _bytes_text(bytes(value)) if element.VR == "UN" else None
        return [text[:MAX_VALUE_CHARS] + ("…" if len(text) > MAX_VALUE_CHARS else "")] if text else []
    values = list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]
    out: list[str] = []
    for v in values:
        if v is None or str(v).strip() in {"", "^"}:
            continue
        if element.VR == "PN":
            text = _fmt_person(v)
        elif element.VR == "DA":
            text = _fmt_date(str(v))
        elif element.VR == "TM":
            text = _fmt_time(str(v))
        elif element.VR == "DT":
            raw = str(v)
            text = _fmt_date(raw[:8]) + (" " + _fmt_time(raw[8:]) if len(raw) > 8 else "")
        elif isinstance(v, bytes):
            continue
        else:
            # Addresses and coded strings separate their parts with carets.
            text = ", ".join(p for p in (" ".join(part.split()) for part in str(v).split("^")) if p)
        if element.keyword == "PatientAge" and len(text) == 4 and text[:3].isdigit():
            unit = {"D": _("days"), "W": _("weeks"), "M": _("months"), "Y": _("years")}.get(text[3], "")
            text = f"{int(text[:3])} {unit}".strip()
        if element.keyword == "PregnancyStatus":
            text = {"1": str(_("not pregnant")), "2": str(_("possibly pregnant")), "3": str(_("pregnant")), "4": str(_("unknown"))}.get(text, text)
        if element.keyword == "PatientSex":
            text = {"M": str(_("male")), "F": str(_("female")), "O": str(_("other"))}.get(text, text)
        if text:
            out.append(text[:MAX_VALUE_CHARS] + ("…" if len(text) > MAX_VALUE_CHARS else ""))
    return out


def _code_meanings(element: DataElement) -> list[str]:
    """What a coded sequence says in words (its items' Code Meaning), e.g. a diagnosis."""
    out = []
    for item in element.value or []:
        meaning = item.get("CodeMeaning") if isinstance(item, Dataset) else None
        if meaning and str(meaning).strip():
            out.append(str(meaning).strip()[:MAX_VALUE_CHARS])
    return out


def _classify(element: DataElement, rule: ps315.Rule | None, parents: tuple[str, ...]) -> tuple[str, str] | None:
    """(group, key) for a public element that reveals something, or None."""
    tag = int(element.tag)
    group_number, number = tag >> 16, tag & 0xFFFF
    if 0x6000 <= group_number <= 0x60FF:
        if number == 0x3000:
            return "graphics", "OverlayData"
        if number in _OVERLAY_TEXT:
            return "graphics", _OVERLAY_TEXT[number]
        return None  # rows, columns, origin: the overlay's shape, not about anyone
    if 0x5000 <= group_number <= 0x50FF:
        return "graphics", _CURVE_TEXT.get(number, "CurveData")
    keyword = element.keyword
    if keyword in ATTRIBUTES:
        if keyword == "PatientID" and parents:
            return "ids", "OtherPatientIDs"
        return ATTRIBUTES[keyword][0], keyword
    if rule is not None:
        group = group_for_rule(rule)
        if group == "people" and parents and parents[0] in _PATIENT_SEQUENCES:
            group = "identity"
        return group, keyword or _tag_text(tag)
    group = VR_GROUPS.get(element.VR)
    if group is None:
        return None
    if group == "people" and parents and parents[0] in _PATIENT_SEQUENCES:
        group = "identity"
    return group, keyword or _tag_text(tag)


@dataclass
class _Identifiers:
    """The header's own patient name parts and ID, to recognise them in private data."""

    name_parts: list[re.Pattern[str]]
    patient_id: re.Pattern[str] | None

    @classmethod
    def of(cls, ds: Dataset) -> _Identifiers:
        parts: list[re.Pattern[str]] = []
        name = ds.get("PatientName")
        if name:
            person = name if isinstance(name, pydicom.valuerep.PersonName) else pydicom.valuerep.PersonName(str(name))
            for part in (person.family_name, person.given_name, person.middle_name):
                for word in str(part or "").split():
                    # Two letters can be a name ("Li"); one letter is an initial that matches anything.
                    if len(word) >= 2 and word.isalpha():
                        parts.append(re.compile(rf"(?<![^\W\d_]){re.escape(word)}(?![^\W\d_])", re.IGNORECASE))
        pid = str(ds.get("PatientID", "") or "").strip()
        # A one- or two-character ID ("1") would match every number in the private data.
        pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(pid)}(?![0-9A-Za-z])", re.IGNORECASE) if len(pid) >= 3 else None
        return cls(parts, pattern)


@dataclass
class _FileFacts:
    found: dict[tuple[str, str], tuple[list[str], list[str]]]  # (group, key) -> (tags, values)
    private_elements: int
    private_creators: set[str]
    burned_in: str  # "yes", "no", "unstated"
    recognizable: str
    overlays: bool

    def add(self, classified: tuple[str, str], tag: str, values: list[str]) -> None:
        tags, existing = self.found.setdefault(classified, ([], []))
        if tag not in tags:
            tags.append(tag)
        existing.extend(values)


def _private_text(element: DataElement) -> list[str]:
    value = element.value
    if isinstance(value, bytes | bytearray):
        text = _bytes_text(bytes(value))
        return [text] if text else []
    if isinstance(value, str | pydicom.valuerep.PersonName):
        text = str(value)
        return [text] if len(text) <= MAX_PRIVATE_TEXT else []
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [str(v) for v in value if isinstance(v, str | pydicom.valuerep.PersonName)]
    return []


def _walk_private(element: DataElement, facts: _FileFacts, ids: _Identifiers) -> None:
    """A private element: counted; shown only when it holds a person name or the patient's own
    name or ID (a manufacturer's field meaning is unknown, but a name is a name)."""
    tag = _tag_text(int(element.tag))
    texts = _private_text(element)
    if element.VR == "PN":
        values = [_fmt_person(t) for t in texts if t.strip(" ^=")]
        if values:
            facts.add(("private", "PrivateName"), tag, values)
        return
    for text in texts:
        shown = " ".join(text.replace("^", " ").split())[:MAX_VALUE_CHARS]
        if not shown:
            continue
        if any(p.search(text) for p in ids.name_parts):
            facts.add(("private", "PrivateName"), tag, [shown])
        if ids.patient_id is not None and ids.patient_id.search(text):
            facts.add(("private", "PrivatePatientID"), tag, [shown])


def _walk(ds: Dataset, parents: tuple[str, ...], facts: _FileFacts, ids: _Identifiers) -> None:
    for element in ds:
        tag = int(element.tag)
        if element.tag.is_private:
            if element.tag.is_private_creator:
                if isinstance(element.value, str) and element.value.strip():
                    facts.private_creators.add(element.value.strip()[:64])
            else:
                facts.private_elements += 1
                if element.VR != "SQ":
                    _walk_private(element, facts, ids)
            if element.VR == "SQ":
                # Public attributes inside a manufacturer's sequence are still the same attributes.
                for item in element.value or []:
                    _walk(item, (*parents, _tag_text(tag)), facts, ids)
            continue
        if (tag >> 16) in range(0x6000, 0x6100) and (tag & 0xFFFF) == 0x3000:
            facts.overlays = True
        if _is_empty(element):
            continue
        rule = ps315.rule_for(tag)
        classified = _classify(element, rule, parents)
        if element.VR == "SQ":
            if classified is not None and rule is not None:
                # The sequence itself is a row of the table (a coded diagnosis, a referenced
                # image): reported with what its codes say, then walked like any other.
                facts.add(classified, _tag_text(tag), _code_meanings(element))
            for item in element.value:
                _walk(item, (*parents, element.keyword or _tag_text(tag)), facts, ids)
            continue
        if classified is None:
            continue
        values = _format(element)
        if values or rule is not None:
            # A table row with no displayable value (binary data) is still reported as present.
            facts.add(classified, _tag_text(tag), values)


def read_header(source: str | IO[bytes]) -> Dataset:
    """The header of one file, pixel data not read. Raises ``InvalidDicomError`` for non-DICOM."""
    return pydicom.dcmread(source, stop_before_pixels=True)


def file_facts(ds: Dataset) -> _FileFacts:
    """What one file's header (with its file meta) reveals."""
    facts = _FileFacts(found={}, private_elements=0, private_creators=set(), burned_in="unstated", recognizable="unstated", overlays=False)
    ids = _Identifiers.of(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _walk(meta, (), facts, ids)
    _walk(ds, (), facts, ids)
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    facts.burned_in = {"YES": "yes", "NO": "no"}.get(burned, "unstated")
    recognizable = str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper()
    facts.recognizable = {"YES": "yes", "NO": "no"}.get(recognizable, "unstated")
    return facts


def _sort_key(key: str) -> tuple[int, str]:
    order = _attribute_order()
    return order.get(key, len(order)), key


@cache
def _attribute_order() -> dict[str, int]:
    return {key: i for i, key in enumerate(ATTRIBUTES)}


def build_report(files: Iterable[tuple[str, IO[bytes] | str]]) -> dict:
    """Read every ``(series_key, file)`` header and count what it reveals.

    Who may call: code that has already narrowed the files to one patient's study (selectors).
    Unreadable files are counted, not raised: one bad file must not hide the rest. Each group
    entry is ``{"key", "tag", "tags", "values", "more", "counts"}``: ``tags`` are the
    elements it came from (repeating groups as ``(60xx,0022)``), ``more`` the number of
    further distinct values not kept.
    """
    findings: dict[tuple[str, str], _Finding] = {}
    series_files: dict[str, int] = {}
    unreadable = 0
    private = {"elements": 0, "creators": set(), "counts": {}}
    flags: dict[str, dict[str, dict[str, int]]] = {"burned_in": {}, "recognizable": {}}
    overlays: dict[str, int] = {}
    for series_key, source in files:
        series_files[series_key] = series_files.get(series_key, 0) + 1
        try:
            ds = read_header(source)
            facts = file_facts(ds)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError,
                NotImplementedError, OverflowError):
            unreadable += 1
            continue
        for (group, key), (tags, values) in facts.found.items():
            finding = findings.setdefault((group, key), _Finding(group=group, keyword=key, tags=[]))
            for tag in tags:
                if tag not in finding.tags and len(finding.tags) < MAX_TAGS:
                    finding.tags.append(tag)
            finding.counts[series_key] = finding.counts.get(series_key, 0) + 1
            for value in values:
                if value in finding.values or value in finding.extra:
                    continue
                if len(finding.values) < MAX_VALUES:
                    finding.values.append(value)
                else:
                    finding.extra.add(value)
                    finding.more += 1
        if facts.private_elements:
            private["elements"] += facts.private_elements
            private["counts"][series_key] = private["counts"].get(series_key, 0) + 1
            private["creators"] |= facts.private_creators
        for name in ("burned_in", "recognizable"):
            state = getattr(facts, name)
            per = flags[name].setdefault(state, {})
            per[series_key] = per.get(series_key, 0) + 1
        if facts.overlays:
            overlays[series_key] = overlays.get(series_key, 0) + 1
    # Distinct UIDs across attributes: an image's SOP Instance UID is also its file meta's.
    uids = {v for f in findings.values() if f.group == "uids" for v in (*f.values, *f.extra)}
    groups: dict[str, list[dict]] = {}
    for (group, key), f in sorted(findings.items(), key=lambda kv: _sort_key(kv[0][1])):
        groups.setdefault(group, []).append(
            {"key": key, "tag": f.tags[0] if f.tags else "", "tags": f.tags, "values": f.values, "more": f.more,
             "counts": f.counts}
        )
    return {
        "version": REPORT_VERSION,
        "files": sum(series_files.values()),
        "unreadable": unreadable,
        "series_files": series_files,
        "groups": groups,
        "private": {
            "elements": private["elements"],
            "creators": sorted(private["creators"])[:20],
            "counts": private["counts"],
        },
        "burned_in": flags["burned_in"],
        "recognizable": flags["recognizable"],
        "overlays": overlays,
        "uid_count": len(uids),
    }

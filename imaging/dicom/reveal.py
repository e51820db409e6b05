"""What a DICOM file's header says about the person in it ("What this scan reveals").

Reads headers only (``stop_before_pixels``) and reports, per attribute, the values found and in
how many files of each series. Attributes are grouped for a patient, not for a DICOM engineer:
who you are, how to reach you, record numbers, health details, where you were scanned, staff
named, the scanner, dates, free text, manufacturers' private data and text burned into pixels.

A curated table names the attributes a patient would recognise; anything else that is a person
name (VR PN), a date (DA/DT) or free text (LT/ST/UT) is still caught by its value
representation, so an unusual file cannot hide a name in an attribute the table forgot.

The report is a plain, JSON-serialisable dict (so it can be cached); :func:`present` turns it
into labelled, translated groups for a template.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

REPORT_VERSION = 1
# A long list of distinct values helps nobody; the count says there are more.
MAX_VALUES = 5
MAX_VALUE_CHARS = 120

GROUPS: dict[str, tuple[Any, Any]] = {
    "identity": (
        _("Who you are"),
        _("Your name, date of birth and other personal details. Anyone holding a copy of the file can read them."),
    ),
    "contact": (
        _("Where you live and how to reach you"),
        _("Addresses and phone numbers, yours or a relative's, copied from the hospital's records."),
    ),
    "ids": (
        _("Record numbers"),
        _("Numbers that link the file to your hospital record. Someone with access to the hospital's systems can look you up with them."),
    ),
    "health": (
        _("Health details"),
        _("Facts about your health written into the file, such as allergies, pregnancy or the reason for the scan."),
    ),
    "place": (
        _("Where you were scanned"),
        _("The hospital, department and machine name. Together with the date, they show where you were and when."),
    ),
    "people": (
        _("Staff named in the file"),
        _("Doctors and radiographers involved in your care. Their names can reveal which clinic or specialist you saw."),
    ),
    "device": (
        _("The scanner"),
        _("Make, model and serial numbers identify the exact machine, and so the place you were scanned."),
    ),
    "dates": (
        _("Dates and times"),
        _("When the scan was made, processed and sent. A date of a hospital visit, with a few other facts, can single a person out."),
    ),
    "text": (
        _("Descriptions and free-text notes"),
        _("Typed in by staff or written by the machine. Free text can contain anything, including names and the reason for the scan."),
    ),
    "private": (
        _("Manufacturer-specific data"),
        _("Scanner makers store their own data in 'private' fields whose meaning only they document. These can hold names or numbers that tools removing personal data may miss."),
    ),
    "burned_in": (
        _("Text on the image itself"),
        _("Some images, especially ultrasound, screenshots and scanned documents, have your name or dates drawn into the picture. Removing header data does not remove them."),
    ),
}

# keyword -> (group, plain label). Order inside a group follows this table.
ATTRIBUTES: dict[str, tuple[str, Any]] = {
    # Who you are
    "PatientName": ("identity", _("Your name")),
    "OtherPatientNames": ("identity", _("Other names")),
    "PatientBirthName": ("identity", _("Birth name")),
    "PatientMotherBirthName": ("identity", _("Mother's birth name")),
    "PatientBirthDate": ("identity", _("Date of birth")),
    "PatientBirthTime": ("identity", _("Time of birth")),
    "PatientSex": ("identity", _("Sex")),
    "PatientAge": ("identity", _("Age at the scan")),
    "PatientSize": ("identity", _("Height")),
    "PatientWeight": ("identity", _("Weight")),
    "EthnicGroup": ("identity", _("Ethnic group")),
    "Occupation": ("identity", _("Occupation")),
    "PatientReligiousPreference": ("identity", _("Religion")),
    "MilitaryRank": ("identity", _("Military rank")),
    "BranchOfService": ("identity", _("Branch of service")),
    # Contact
    "PatientAddress": ("contact", _("Home address")),
    "PatientTelephoneNumbers": ("contact", _("Phone numbers")),
    "PatientTelecomInformation": ("contact", _("Phone, email or other contact details")),
    "CountryOfResidence": ("contact", _("Country of residence")),
    "RegionOfResidence": ("contact", _("Region of residence")),
    "ResponsiblePerson": ("contact", _("Person responsible for you (relative or guardian)")),
    "ResponsibleOrganization": ("contact", _("Organisation responsible for you")),
    "PersonAddress": ("contact", _("A person's address")),
    "PersonTelephoneNumbers": ("contact", _("A person's phone numbers")),
    # Record numbers
    "PatientID": ("ids", _("Patient ID (medical record number)")),
    "OtherPatientIDs": ("ids", _("Other patient IDs")),
    "IssuerOfPatientID": ("ids", _("Who issued the patient ID")),
    "MedicalRecordLocator": ("ids", _("Medical record locator")),
    "AccessionNumber": ("ids", _("Accession number (the order for this scan)")),
    "StudyID": ("ids", _("Study ID")),
    "AdmissionID": ("ids", _("Hospital admission number")),
    "ServiceEpisodeID": ("ids", _("Episode of care number")),
    "RequestedProcedureID": ("ids", _("Requested procedure ID")),
    "ScheduledProcedureStepID": ("ids", _("Scheduled procedure step ID")),
    "PerformedProcedureStepID": ("ids", _("Performed procedure step ID")),
    "StudyInstanceUID": ("ids", _("Study's unique identifier (UID)")),
    # Health
    "AdditionalPatientHistory": ("health", _("Medical history notes")),
    "AdmittingDiagnosesDescription": ("health", _("Admitting diagnosis")),
    "Allergies": ("health", _("Allergies")),
    "MedicalAlerts": ("health", _("Medical alerts")),
    "PregnancyStatus": ("health", _("Pregnancy status")),
    "LastMenstrualDate": ("health", _("Date of last menstrual period")),
    "SmokingStatus": ("health", _("Smoking status")),
    "PatientState": ("health", _("Your condition")),
    "ReasonForStudy": ("health", _("Reason for the scan")),
    "ReasonForTheRequestedProcedure": ("health", _("Reason for the requested procedure")),
    # Place
    "InstitutionName": ("place", _("Hospital or clinic")),
    "InstitutionAddress": ("place", _("Hospital address")),
    "InstitutionalDepartmentName": ("place", _("Department")),
    "StationName": ("place", _("Machine's network name")),
    "StationAETitle": ("place", _("Machine's network name")),
    "PerformedStationName": ("place", _("Machine that performed the scan")),
    "PerformedLocation": ("place", _("Room or location of the scan")),
    "ScheduledStationName": ("place", _("Machine the scan was booked on")),
    "CurrentPatientLocation": ("place", _("Your ward or location at the time")),
    "PatientInstitutionResidence": ("place", _("Institution you were staying in")),
    # People
    "ReferringPhysicianName": ("people", _("Referring doctor")),
    "ReferringPhysicianAddress": ("people", _("Referring doctor's address")),
    "ReferringPhysicianTelephoneNumbers": ("people", _("Referring doctor's phone")),
    "PhysiciansOfRecord": ("people", _("Doctors of record")),
    "PerformingPhysicianName": ("people", _("Doctor who performed the scan")),
    "NameOfPhysiciansReadingStudy": ("people", _("Radiologist who read the scan")),
    "OperatorsName": ("people", _("Radiographer or operator")),
    "RequestingPhysician": ("people", _("Doctor who requested the scan")),
    "ScheduledPerformingPhysicianName": ("people", _("Doctor booked for the scan")),
    "VerifyingObserverName": ("people", _("Person who verified the report")),
    "ContentCreatorName": ("people", _("Person who created the content")),
    "ReviewerName": ("people", _("Reviewer")),
    "PhysicianApprovingInterpretation": ("people", _("Doctor who approved the report")),
    # Device
    "Manufacturer": ("device", _("Manufacturer")),
    "ManufacturerModelName": ("device", _("Model")),
    "DeviceSerialNumber": ("device", _("Device serial number")),
    "DeviceUID": ("device", _("Device unique identifier")),
    "DeviceID": ("device", _("Device ID")),
    "GantryID": ("device", _("Gantry ID")),
    "DetectorID": ("device", _("Detector ID")),
    "PlateID": ("device", _("Imaging plate ID")),
    "CassetteID": ("device", _("Cassette ID")),
    "GeneratorID": ("device", _("X-ray generator ID")),
    "SoftwareVersions": ("device", _("Software versions")),
    # Dates (anything else with a DA/DT value is caught by its VR)
    "StudyDate": ("dates", _("Date of the study")),
    "StudyTime": ("dates", _("Time of the study")),
    "SeriesDate": ("dates", _("Date of the series")),
    "AcquisitionDate": ("dates", _("Date the images were taken")),
    "AcquisitionTime": ("dates", _("Time the images were taken")),
    "AcquisitionDateTime": ("dates", _("Date and time the images were taken")),
    "ContentDate": ("dates", _("Date the images were created")),
    "InstanceCreationDate": ("dates", _("Date the file was created")),
    "AdmittingDate": ("dates", _("Admission date")),
    "PerformedProcedureStepStartDate": ("dates", _("Date the procedure started")),
    # Free text
    "StudyDescription": ("text", _("Study description")),
    "SeriesDescription": ("text", _("Series description")),
    "ProtocolName": ("text", _("Scan protocol")),
    "RequestedProcedureDescription": ("text", _("Requested procedure")),
    "PerformedProcedureStepDescription": ("text", _("Procedure performed")),
    "ImageComments": ("text", _("Comments on the image")),
    "StudyComments": ("text", _("Comments on the study")),
    "PatientComments": ("text", _("Comments about you")),
    "VisitComments": ("text", _("Comments on the visit")),
    "RequestedProcedureComments": ("text", _("Comments on the request")),
    "ImagingServiceRequestComments": ("text", _("Comments on the imaging request")),
    "AcquisitionComments": ("text", _("Comments from the scan")),
    "DerivationDescription": ("text", _("How the image was derived")),
    "FrameComments": ("text", _("Comments on a frame")),
    "TextString": ("text", _("Annotation text")),
    "TextValue": ("text", _("Report text")),
    "InterpretationText": ("text", _("Interpretation")),
    "ResultsComments": ("text", _("Comments on the results")),
    "ContentDescription": ("text", _("Content description")),
}

# Value representations that always matter, even for attributes the table does not list.
VR_GROUPS = {"PN": "people", "DA": "dates", "DT": "dates", "LT": "text", "ST": "text", "UT": "text"}
# In these, a PN is the patient's own name, not staff.
_PATIENT_SEQUENCES = {"OtherPatientIDsSequence", "PatientBreedCodeSequence"}


@dataclass
class _Finding:
    group: str
    keyword: str
    tag: str
    values: list[str] = field(default_factory=list)
    more: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _tag_text(element: DataElement) -> str:
    return f"({element.tag.group:04X},{element.tag.element:04X})"


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


def _format(element: DataElement) -> list[str]:
    """Human-readable values of one element; [] when empty."""
    value = element.value
    if value is None or value == "" or element.VR in {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"}:
        return []
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


def _classify(element: DataElement, parents: tuple[str, ...]) -> tuple[str, str] | None:
    """(group, key) for an element that reveals something, or None."""
    keyword = element.keyword
    if keyword in ATTRIBUTES:
        group = ATTRIBUTES[keyword][0]
        if keyword == "PatientID" and parents:
            return "ids", "OtherPatientIDs"
        return group, keyword
    group = VR_GROUPS.get(element.VR)
    if group is None:
        return None
    if group == "people" and parents and parents[0] in _PATIENT_SEQUENCES:
        group = "identity"
    return group, keyword or _tag_text(element)


@dataclass
class _FileFacts:
    found: dict[tuple[str, str], tuple[str, list[str]]]
    private_elements: int
    private_creators: set[str]
    burned_in: str  # "yes", "no", "unstated"
    recognizable: str
    overlays: bool


def _walk(ds: Dataset, parents: tuple[str, ...], facts: _FileFacts) -> None:
    for element in ds:
        if element.tag.group == 0x0002:
            continue
        if element.tag.is_private:
            if element.tag.is_private_creator:
                if isinstance(element.value, str) and element.value.strip():
                    facts.private_creators.add(element.value.strip()[:64])
            else:
                facts.private_elements += 1
            continue  # never shown: their meaning is the manufacturer's
        if 0x6000 <= element.tag.group <= 0x60FF and element.tag.element == 0x3000:
            facts.overlays = True
        if element.VR == "SQ":
            for item in element.value or []:
                _walk(item, (*parents, element.keyword or _tag_text(element)), facts)
            continue
        classified = _classify(element, parents)
        if classified is None:
            continue
        values = _format(element)
        if not values:
            continue
        tag, existing = facts.found.get(classified, (_tag_text(element), []))
        facts.found[classified] = (tag, existing + values)


def read_header(source: str | IO[bytes]) -> Dataset:
    """The header of one file, pixel data not read. Raises ``InvalidDicomError`` for non-DICOM."""
    return pydicom.dcmread(source, stop_before_pixels=True)


def file_facts(ds: Dataset) -> _FileFacts:
    facts = _FileFacts(found={}, private_elements=0, private_creators=set(), burned_in="unstated", recognizable="unstated", overlays=False)
    _walk(ds, (), facts)
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    facts.burned_in = {"YES": "yes", "NO": "no"}.get(burned, "unstated")
    recognizable = str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper()
    facts.recognizable = {"YES": "yes", "NO": "no"}.get(recognizable, "unstated")
    return facts


def build_report(files: Iterable[tuple[str, IO[bytes] | str]]) -> dict:
    """Read every ``(series_key, file)`` header and count what it reveals.

    Who may call: code that has already narrowed the files to one patient's study (selectors).
    Unreadable files are counted, not raised: one bad file must not hide the rest.
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
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
            unreadable += 1
            continue
        facts = file_facts(ds)
        for (group, key), (tag, values) in facts.found.items():
            finding = findings.setdefault((group, key), _Finding(group=group, keyword=key, tag=tag))
            finding.counts[series_key] = finding.counts.get(series_key, 0) + 1
            for value in values:
                if value in finding.values:
                    continue
                if len(finding.values) < MAX_VALUES:
                    finding.values.append(value)
                else:
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
    order = {key: i for i, key in enumerate(ATTRIBUTES)}
    groups: dict[str, list[dict]] = {}
    for (group, key), f in sorted(findings.items(), key=lambda kv: (order.get(kv[0][1], len(order)), kv[0][1])):
        groups.setdefault(group, []).append(
            {"key": key, "tag": f.tag, "values": f.values, "more": f.more, "counts": f.counts}
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
    }


# --- Presentation ------------------------------------------------------------------------------


@dataclass
class Item:
    label: str
    tag: str
    values: list[str]
    more: int
    total: int
    per_series: list[tuple[str, int, int]]  # (series label, files with it, files in series)


@dataclass
class Group:
    key: str
    title: str
    explanation: str
    items: list[Item]
    files: int  # files in which anything of this group was found
    note: str = ""


def _label_for(key: str) -> str:
    if key in ATTRIBUTES:
        return str(ATTRIBUTES[key][1])
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(key)
    return dictionary_description(tag) if tag is not None else key


def _per_series(counts: dict[str, int], series_files: dict[str, int], labels: dict[str, str]) -> list[tuple[str, int, int]]:
    return [(labels.get(k, k), counts.get(k, 0), n) for k, n in series_files.items() if counts.get(k, 0)]


def present(report: dict, series_labels: dict[str, str]) -> list[Group]:
    """Groups in reading order, with translated labels and per-series counts."""
    series_files: dict[str, int] = report["series_files"]
    out: list[Group] = []
    for key, (title, explanation) in GROUPS.items():
        items: list[Item] = []
        files_with = 0
        note = ""
        if key == "private":
            priv = report["private"]
            if priv["elements"]:
                total = sum(priv["counts"].values())
                values = priv["creators"] or []
                items.append(Item(str(_("Private fields")), "", values, 0, total, _per_series(priv["counts"], series_files, series_labels)))
                files_with = total
                note = ngettext(
                    "%(n)d private field in all; their contents are not shown here.",
                    "%(n)d private fields in all; their contents are not shown here.",
                    priv["elements"],
                ) % {"n": priv["elements"]}
        elif key == "burned_in":
            labels = {
                "yes": str(_("Marked as having text on the image")),
                "no": str(_("Marked as having no text on the image")),
                "unstated": str(_("Not stated in the file")),
            }
            for state in ("yes", "no", "unstated"):
                counts = report["burned_in"].get(state, {})
                if counts:
                    items.append(Item(labels[state], "(0028,0301)", [], 0, sum(counts.values()), _per_series(counts, series_files, series_labels)))
            files_with = sum(report["burned_in"].get("yes", {}).values())
            recognizable = report["recognizable"].get("yes", {})
            if recognizable:
                items.append(Item(str(_("Marked as showing recognisable features (such as a face)")), "(0028,0302)", [], 0, sum(recognizable.values()), _per_series(recognizable, series_files, series_labels)))
            if report.get("overlays"):
                items.append(Item(str(_("Has drawn overlays that may contain text")), "(60xx,3000)", [], 0, sum(report["overlays"].values()), _per_series(report["overlays"], series_files, series_labels)))
        else:
            for entry in report["groups"].get(key, []):
                total = sum(entry["counts"].values())
                files_with = max(files_with, total)
                items.append(
                    Item(_label_for(entry["key"]), entry["tag"], entry["values"], entry["more"], total, _per_series(entry["counts"], series_files, series_labels))
                )
        if items:
            out.append(Group(key, str(title), str(explanation), items, files_with, note))
    return out


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

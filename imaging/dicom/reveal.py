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

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import IO, Any

import pydicom
from django.utils.translation import gettext as _t
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from imaging.dicom import ps315

# 2: driven by PS3.15 Table E.1-1 (times, every UID, curves, overlays, private sequences, the
# file meta); entries carry the tags they came from. Cached reports of version 1 are ignored.
REPORT_VERSION = 2
# A long list of distinct values helps nobody; the count says there are more.
MAX_VALUES = 5
MAX_VALUE_CHARS = 120
# A private element longer than this is data, not a name or an ID typed into a field.
MAX_PRIVATE_TEXT = 1024

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
    "uids": (
        _("Unique identifiers"),
        _("Long numbers (UIDs) given to each study, series and image when it was made. Each is meant to be unique in the world, so the same number in the hospital's systems links a file straight back to your record."),
    ),
    "graphics": (
        _("Drawings and graphs stored with the image"),
        _("Overlays (drawings or text a viewer shows on top of the picture) and curves (graphs such as a heart trace) are stored beside the image. Their labels and notes can hold names or dates."),
    ),
    "private": (
        _("Manufacturer-specific data"),
        _("Scanner makers store their own data in 'private' fields whose meaning only they document. These can hold names or numbers that tools removing personal data may miss."),
    ),
    "burned_in": (
        _("Text on the image itself"),
        _("Some images, especially ultrasound, screenshots and scanned documents, have your name or dates drawn into the picture. Removing header data does not remove them."),
    ),
    "face": (
        _("Your face"),
        _("A CT or MRI scan of the head is a 3-D picture of it. Software can rebuild the surface of the face from it, well enough for someone who knows you to recognise it."),
    ),
}

# keyword -> (group, plain label). Order inside a group follows this table. Labels only: which
# attributes count comes from PS3.15 Table E.1-1 (see the module docstring).
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
    "ReasonForVisit": ("health", _("Reason for the visit")),
    "ContrastBolusAgent": ("health", _("Contrast agent given")),
    "RequestedContrastAgent": ("health", _("Contrast agent requested")),
    "PreMedication": ("health", _("Medication before the scan")),
    "SpecialNeeds": ("health", _("Special needs")),
    # Place
    "InstitutionName": ("place", _("Hospital or clinic")),
    "InstitutionAddress": ("place", _("Hospital address")),
    "InstitutionalDepartmentName": ("place", _("Department")),
    "RequestingService": ("place", _("Department that requested the scan")),
    "StationName": ("place", _("Machine's network name")),
    "StationAETitle": ("place", _("Machine's network name")),
    "PerformedStationName": ("place", _("Machine that performed the scan")),
    "PerformedStationAETitle": ("place", _("Network name of the machine that performed the scan")),
    "PerformedLocation": ("place", _("Room or location of the scan")),
    "ScheduledStationName": ("place", _("Machine the scan was booked on")),
    "ScheduledStationAETitle": ("place", _("Network name of the machine the scan was booked on")),
    "CurrentPatientLocation": ("place", _("Your ward or location at the time")),
    "PatientInstitutionResidence": ("place", _("Institution you were staying in")),
    "VerifyingOrganization": ("place", _("Organisation that verified the report")),
    "SourceApplicationEntityTitle": ("place", _("Network name of the machine that wrote the file")),
    "SendingApplicationEntityTitle": ("place", _("Network name of the machine that sent the file")),
    "ReceivingApplicationEntityTitle": ("place", _("Network name of the machine that received the file")),
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
    "PersonName": ("people", _("A person's name")),
    # Device
    "Manufacturer": ("device", _("Manufacturer")),
    "ManufacturerModelName": ("device", _("Model")),
    "DeviceSerialNumber": ("device", _("Device serial number")),
    "DeviceUID": ("device", _("Device unique identifier")),
    "DeviceID": ("device", _("Device ID")),
    "DeviceDescription": ("device", _("Device description")),
    "TreatmentMachineName": ("device", _("Treatment machine name")),
    "GantryID": ("device", _("Gantry ID")),
    "DetectorID": ("device", _("Detector ID")),
    "PlateID": ("device", _("Imaging plate ID")),
    "CassetteID": ("device", _("Cassette ID")),
    "GeneratorID": ("device", _("X-ray generator ID")),
    "SoftwareVersions": ("device", _("Software versions")),
    # Dates and times (anything else with a DA/DT/TM value is caught by the table or its VR)
    "StudyDate": ("dates", _("Date of the study")),
    "StudyTime": ("dates", _("Time of the study")),
    "SeriesDate": ("dates", _("Date of the series")),
    "SeriesTime": ("dates", _("Time of the series")),
    "AcquisitionDate": ("dates", _("Date the images were taken")),
    "AcquisitionTime": ("dates", _("Time the images were taken")),
    "AcquisitionDateTime": ("dates", _("Date and time the images were taken")),
    "ContentDate": ("dates", _("Date the images were created")),
    "ContentTime": ("dates", _("Time the images were created")),
    "InstanceCreationDate": ("dates", _("Date the file was created")),
    "InstanceCreationTime": ("dates", _("Time the file was created")),
    "AdmittingDate": ("dates", _("Admission date")),
    "PerformedProcedureStepStartDate": ("dates", _("Date the procedure started")),
    "PerformedProcedureStepStartTime": ("dates", _("Time the procedure started")),
    "TimezoneOffsetFromUTC": ("dates", _("Time zone of the hospital (offset from UTC)")),
    # Free text
    "StudyDescription": ("text", _("Study description")),
    "SeriesDescription": ("text", _("Series description")),
    "ProtocolName": ("text", _("Scan protocol")),
    "RequestedProcedureDescription": ("text", _("Requested procedure")),
    "ScheduledProcedureStepDescription": ("text", _("Procedure booked")),
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
    "UnformattedTextValue": ("text", _("Annotation text")),
    "TextValue": ("text", _("Report text")),
    "InterpretationText": ("text", _("Interpretation")),
    "ResultsComments": ("text", _("Comments on the results")),
    "ContentDescription": ("text", _("Content description")),
    "RTPlanLabel": ("text", _("Radiotherapy plan label")),
    "RTPlanName": ("text", _("Radiotherapy plan name")),
    "RTPlanDescription": ("text", _("Radiotherapy plan description")),
    "MultiplexGroupLabel": ("text", _("Label of a recorded trace (waveform)")),
    # Unique identifiers
    "StudyInstanceUID": ("uids", _("Study's unique identifier (UID)")),
    "SeriesInstanceUID": ("uids", _("Series' unique identifier")),
    "SOPInstanceUID": ("uids", _("Each image's unique identifier")),
    "MediaStorageSOPInstanceUID": ("uids", _("Each file's unique identifier (file header)")),
    "FrameOfReferenceUID": ("uids", _("Frame of reference (links images taken in one position)")),
    "ReferencedSOPInstanceUID": ("uids", _("Identifiers of other images this file refers to")),
    "IrradiationEventUID": ("uids", _("Identifier of the X-ray exposure")),
    # Overlays and curves (repeating groups 60xx and 50xx)
    "OverlayData": ("graphics", _("An overlay drawn over the image")),
    "OverlayDescription": ("graphics", _("Overlay description")),
    "OverlayLabel": ("graphics", _("Overlay label")),
    "OverlayComments": ("graphics", _("Overlay comments")),
    "CurveData": ("graphics", _("A curve (graph) stored with the image")),
    "CurveDescription": ("graphics", _("Curve description")),
    "CurveLabel": ("graphics", _("Curve label")),
    "AxisLabels": ("graphics", _("Curve axis labels")),
    # Private data that names someone (see _walk_private)
    "PrivateName": ("private", _("A name inside manufacturer-specific data")),
    "PrivatePatientID": ("private", _("Your patient ID inside manufacturer-specific data")),
}

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


# --- Grouping the table's rows ------------------------------------------------------------------

# Words of an attribute's name that place a table row without a curated label, tried in this
# order (a "Reason for Study" is health before it is anything else; a "Device Serial Number" is
# the device before it is a number). Each word matches at the start of a word of the name.
_NAME_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contact", ("address", "telephone", "telecom", "phone", "residence", "country of", "region of")),
    ("identity", ("patient's", "patient", "name to use", "pronoun", "gender", "sex ", "ethnic", "person names")),
    ("health", ("diagnos", "allerg", "medical alert", "pregnan", "contrast", "medication", "smoking", "special needs",
                "radiopharmaceutical", "drug", "history", "impressions", "treatment site", "intent narrative",
                "reason for study", "reason for visit", "reason for the requested", "reason for requested",
                "reason for the imaging")),
    ("people", ("physician", "operator", "observer", "performer", "author", "recorder", "transcriber", "reviewer",
                "interpreter", "creator", "participant", "approver", "distribution name", "recipient", "entered by",
                "verbal source", "person", "owner")),
    ("device", ("device", "machine", "serial", "gantry", "detector", "generator", "cassette", "plate id", "manufacturer",
                "lens", "camera", "transducer", "udi", "maker note", "modifying system", "x-ray source", "equipment")),
    ("ids", ("id", "ids", "number", "identifier", "accession", "issuer", "locator", "insurance", "barcode")),
    ("place", ("gps", "station", "ae", "location", "institution", "department", "organization", "service", "custodial",
               "site", "ethics committee", "coordinating center", "sponsor", "destination", "originator", "network",
               "retrieve", "receiving")),
)
_NAME_PATTERNS = tuple(
    (group, re.compile(r"\b(?:" + "|".join(re.escape(w) + ("" if w.endswith(" ") or len(w) > 3 else r"\b") for w in words) + ")"))
    for group, words in _NAME_WORDS
)
# A sequence that points at other objects (images, studies, steps) by their UIDs.
_REFERENCE_SEQUENCE = re.compile(r"^(referenced (?!patient)|source image )")


def _rule_vr(rule: ps315.Rule) -> str:
    """The rule's value representation from pydicom's dictionary, or guessed from its name for
    attributes newer than the dictionary."""
    from pydicom.datadict import dictionary_VR

    if rule.mask == 0xFFFFFFFF:
        try:
            return dictionary_VR(rule.tag)
        except KeyError:
            pass
    name = rule.name.lower()
    if name.endswith("sequence") or "sequence\n" in name:
        return "SQ"
    for suffix, vr in (("datetime", "DT"), ("date", "DA"), ("time", "TM"), ("uid", "UI")):
        if name.split("\n")[0].endswith(suffix):
            return vr
    return "LO"


def group_for_rule(rule: ps315.Rule) -> str:
    """The patient-facing group of one row of Table E.1-1: the curated group where the row has a
    plain label, otherwise by value representation, then by words in the attribute's name
    (free text when nothing more specific fits)."""
    return _group_for_row(rule.tag, rule.mask)


@cache
def _group_for_row(tag: int, mask: int) -> str:
    rule = next(r for r in ps315.table().rules if (r.tag, r.mask) == (tag, mask))
    if rule.tag_is_private:
        return "private"
    if ps315.in_curve_or_overlay(rule.tag):
        return "graphics"
    if rule.keyword in ATTRIBUTES:
        return ATTRIBUTES[rule.keyword][0]
    vr = _rule_vr(rule)
    name = " " + rule.name.split("\n")[0].lower() + " "
    if vr == "UI":
        return "uids"
    if vr in {"DA", "DT", "TM"}:
        return "dates"
    if vr == "AE":
        return "place"
    if vr == "PN":
        return "identity" if "patient" in name else "people"
    if vr == "SQ" and _REFERENCE_SEQUENCE.match(name.strip()):
        return "uids"
    for group, pattern in _NAME_PATTERNS:
        if pattern.search(name):
            return group
    return "text"


def label_for_rule(rule: ps315.Rule) -> str:
    """The table's attribute name, first line only (some rows carry a note after a blank line)."""
    return rule.name.split("\n")[0].strip()


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


# --- Text in the pixels and faces (from the database, beside the cached header report) ----------

# OCR kinds (imaging.models.PixelText.kinds) in the order a patient should read them.
PIXEL_KINDS = ("name", "patient_id", "birth_date", "accession", "date", "institution")
# Fewer than this many characters read from a picture is noise, not text worth quoting.
MIN_PIXEL_TEXT = 2


@dataclass(frozen=True)
class PixelRow:
    """One image instance's OCR state, as ``imaging.selectors`` reads it from the database."""

    series_key: str
    modality: str
    status: str  # "found", "none", "not_checked", or "" when OCR has not run yet
    kinds: tuple[str, ...] = ()
    texts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (text read, its kinds) per region
    reason: str = ""


def pixel_summary(rows: Iterable[PixelRow]) -> dict:
    """Count, per series, the images whose pixels show each kind of identifier, those with text,
    without, that could not be checked and that are not checked yet. A plain dict (like the
    header report) so :func:`present` can be tested without a database."""
    summary: dict[str, Any] = {"kinds": {}, "texts": {}, "found": {}, "none": {}, "failed": {}, "unchecked": {},
                               "reasons": [], "modalities": {}}

    def bump(bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1

    for row in rows:
        mods = summary["modalities"]
        if row.modality and row.modality not in mods.setdefault(row.series_key, []):
            mods[row.series_key].append(row.modality)
        if row.status == "found":
            bump(summary["found"], row.series_key)
            for kind in dict.fromkeys(row.kinds):
                bump(summary["kinds"].setdefault(kind, {}), row.series_key)
            for text, kinds in row.texts:
                text = " ".join(str(text).split())[:MAX_VALUE_CHARS]
                if len(text) < MIN_PIXEL_TEXT:
                    continue
                for kind in kinds or ("text",):
                    shown = summary["texts"].setdefault(kind, [])
                    if text not in shown and len(shown) < MAX_VALUES:
                        shown.append(text)
        elif row.status == "none":
            bump(summary["none"], row.series_key)
        elif row.status == "not_checked":
            bump(summary["failed"], row.series_key)
            if row.reason and row.reason not in summary["reasons"] and len(summary["reasons"]) < MAX_VALUES:
                summary["reasons"].append(row.reason)
        else:
            bump(summary["unchecked"], row.series_key)
    return summary


def _images(n: int, modalities: set[str]) -> str:
    """'30 ultrasound images', '1 CT image', '12 images' (the kind only when there is one)."""
    modality = next(iter(modalities)) if len(modalities) == 1 else ""
    if modality == "US":
        return ngettext("%(n)d ultrasound image", "%(n)d ultrasound images", n) % {"n": n}
    if modality == "CT":
        return ngettext("%(n)d CT image", "%(n)d CT images", n) % {"n": n}
    if modality == "MR":
        return ngettext("%(n)d MRI image", "%(n)d MRI images", n) % {"n": n}
    if modality in {"CR", "DX", "RF", "XA"}:
        return ngettext("%(n)d X-ray image", "%(n)d X-ray images", n) % {"n": n}
    if modality == "MG":
        return ngettext("%(n)d mammography image", "%(n)d mammography images", n) % {"n": n}
    if modality == "NM" or modality == "PT":
        return ngettext("%(n)d nuclear medicine image", "%(n)d nuclear medicine images", n) % {"n": n}
    if modality in {"SC", "OT", "DOC"}:
        return ngettext("%(n)d scanned or captured image", "%(n)d scanned or captured images", n) % {"n": n}
    return ngettext("%(n)d image", "%(n)d images", n) % {"n": n}


def _pixel_sentence(kind: str, images: str) -> str:
    sentences = {
        "name": _("Your name is printed on %(images)s."),
        "patient_id": _("Your hospital number is printed on %(images)s."),
        "birth_date": _("Your date of birth is printed on %(images)s."),
        "accession": _("The scan's order (accession) number is printed on %(images)s."),
        "date": _("A date is printed on %(images)s."),
        "institution": _("The hospital's name is printed on %(images)s."),
    }
    sentence = sentences.get(kind, _("Text of another kind is printed on %(images)s."))
    return str(sentence) % {"images": images}


# --- Presentation ------------------------------------------------------------------------------


@dataclass
class Item:
    label: str
    tag: str
    values: list[str]
    more: int
    total: int
    per_series: list[tuple[str, int, int]]  # (series label, files with it, files in series)
    note: str = ""  # shown instead of values when there are none ("present, binary data")


@dataclass
class Group:
    key: str
    title: str
    explanation: str
    items: list[Item]
    files: int  # files in which anything of this group was found
    note: str = ""


def label_for(key: str) -> str:
    """The plain label of a report key: curated, else the table's attribute name, else pydicom's."""
    if key in ATTRIBUTES:
        return str(ATTRIBUTES[key][1])
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(key)
    if tag is None and key.startswith("(") and len(key) == 11:
        try:
            tag = int(key[1:5] + key[6:10], 16)
        except ValueError:
            tag = None
    if tag is not None:
        rule = ps315.rule_for(tag)
        if rule is not None and rule.keyword:
            return label_for_rule(rule)
        try:
            return dictionary_description(tag)
        except KeyError:
            pass
        if rule is not None:
            return label_for_rule(rule)
    return key


def _per_series(counts: dict[str, int], series_files: dict[str, int], labels: dict[str, str]) -> list[tuple[str, int, int]]:
    return [(labels.get(k, k), counts.get(k, 0), n) for k, n in series_files.items() if counts.get(k, 0)]


def _pixel_items(pixels: dict, series_files: dict[str, int], labels: dict[str, str]) -> tuple[list[Item], int]:
    """The "Text on the image itself" sentences from OCR results, most revealing first."""
    items: list[Item] = []
    modalities = pixels.get("modalities", {})

    def mods(counts: dict[str, int]) -> set[str]:
        return {m for key in counts for m in modalities.get(key, [])}

    def add(label: str, counts: dict[str, int], values: list[str] | None = None) -> None:
        items.append(Item(label, "", list(values or []), 0, sum(counts.values()), _per_series(counts, series_files, labels)))

    kinds = pixels.get("kinds", {})
    for kind in (*PIXEL_KINDS, *sorted(k for k in kinds if k not in PIXEL_KINDS and k != "text")):
        counts = kinds.get(kind)
        if counts:
            add(_pixel_sentence(kind, _images(sum(counts.values()), mods(counts))), counts, pixels.get("texts", {}).get(kind))
    found = pixels.get("found", {})
    if found:
        n = sum(found.values())
        add(_t("Text was found on %(images)s.") % {"images": _images(n, mods(found))}, found, pixels.get("texts", {}).get("text"))
    failed = pixels.get("failed", {})
    if failed:
        n = sum(failed.values())
        add(ngettext("%(images)s could not be checked for text.", "%(images)s could not be checked for text.", n)
            % {"images": _images(n, mods(failed))}, failed, pixels.get("reasons"))
    unchecked = pixels.get("unchecked", {})
    if unchecked:
        n = sum(unchecked.values())
        add(ngettext("%(images)s has not been checked for text yet.", "%(images)s have not been checked for text yet.", n)
            % {"images": _images(n, mods(unchecked))}, unchecked)
    none = pixels.get("none", {})
    if none:
        n = sum(none.values())
        add(_t("No text was found on %(images)s.") % {"images": _images(n, mods(none))}, none)
    return items, sum(found.values())


def present(report: dict, series_labels: dict[str, str], *, pixels: dict | None = None,
            faces: dict[str, int] | None = None) -> list[Group]:
    """Groups in reading order, with translated labels and per-series counts.

    ``pixels`` is :func:`pixel_summary` of the study's OCR results and ``faces`` maps the
    series that are head volumes to their number of images; both come from the database (the
    header report is cached, they change without the files changing).
    """
    series_files: dict[str, int] = report["series_files"]
    out: list[Group] = []
    for key, (title, explanation) in GROUPS.items():
        items: list[Item] = []
        files_with = 0
        note = ""
        for entry in report["groups"].get(key, []):
            total = sum(entry["counts"].values())
            files_with = max(files_with, total)
            shown = "" if entry["values"] else _t("Present (no text to show)")
            items.append(
                Item(label_for(entry["key"]), entry["tag"], entry["values"], entry["more"], total,
                     _per_series(entry["counts"], series_files, series_labels), shown)
            )
        if key == "private":
            priv = report["private"]
            if priv["elements"]:
                total = sum(priv["counts"].values())
                values = priv["creators"] or []
                items.append(Item(_t("Private fields"), "", values, 0, total, _per_series(priv["counts"], series_files, series_labels)))
                files_with = max(files_with, total)
                note = ngettext(
                    "%(n)d private field in all; their contents are not shown here unless they hold a name or your patient ID.",
                    "%(n)d private fields in all; their contents are not shown here unless they hold a name or your patient ID.",
                    priv["elements"],
                ) % {"n": priv["elements"]}
        elif key == "uids" and items:
            n = report.get("uid_count", 0)
            note = ngettext(
                "%(n)d unique identifier in all; a few are shown.",
                "%(n)d unique identifiers in all; a few are shown.",
                n,
            ) % {"n": n}
        elif key == "burned_in":
            pixel_items, found = _pixel_items(pixels or {}, series_files, series_labels)
            items.extend(pixel_items)
            labels = {
                "yes": _t("Marked as having text on the image"),
                "no": _t("Marked as having no text on the image"),
                "unstated": _t("Not stated in the file"),
            }
            for state in ("yes", "no", "unstated"):
                counts = report["burned_in"].get(state, {})
                if counts:
                    items.append(Item(labels[state], "(0028,0301)", [], 0, sum(counts.values()), _per_series(counts, series_files, series_labels)))
            files_with = max(found, sum(report["burned_in"].get("yes", {}).values()))
            recognizable = report["recognizable"].get("yes", {})
            if recognizable:
                items.append(Item(_t("Marked as showing recognisable features (such as a face)"), "(0028,0302)", [], 0, sum(recognizable.values()), _per_series(recognizable, series_files, series_labels)))
        elif key == "face" and faces:
            per = [(series_labels.get(k, k), n, series_files.get(k, n)) for k, n in faces.items()]
            total = sum(faces.values())
            items.append(Item(_t("A face can be rebuilt from this head scan"), "", [], 0, total, per))
            files_with = total
            note = _t("Lightbox's de-identified copies remove names and numbers from the files, but they do not remove "
                      "the face from the pictures (they are not 'defaced'). Share a head scan as carefully as your name.")
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

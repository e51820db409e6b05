"""The patient-facing groups and plain labels of the header report, and how a row of PS3.15
Table E.1-1 without a curated label is grouped and labelled."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from django.utils.translation import gettext_lazy as _

from imaging.dicom import ps315

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

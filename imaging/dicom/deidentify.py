"""De-identification for exports (DICOM PS3.15 Annex E, Basic Application Confidentiality Profile).

The heavy lifting is done by dicognito (a maintained de-identifier): it replaces names, IDs,
UIDs, addresses, institution and equipment identifiers, and shifts dates and times, and it does
so *consistently* for one ``Anonymizer`` instance, so a study, its series and cross-references
keep pointing at each other inside one archive. One ``Deidentifier`` is made per archive with a
random seed, so two exports of the same study cannot be linked by their replaced UIDs.

On top of dicognito we apply the parts of the Basic Profile it leaves alone: private tags are
removed (the profile's default), free-text attributes the profile marks X/Z are removed or
emptied, the birth date is emptied rather than shifted, and the De-identification Method Code
Sequence names the profile. Pixel data is never touched: files whose header says
``BurnedInAnnotation = YES`` are reported so the archive's README can warn about them.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import pydicom
from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

# Annex E Table E.1-1 attributes that dicognito does not replace and that the Basic Profile
# removes (X) or whose content may carry names and free text. Removing them is always allowed.
_REMOVE = (
    "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence",
    "Allergies",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "DerivationDescription",
    "EthnicGroup",
    "ImageComments",
    "InterpretationText",
    "MedicalAlerts",
    "MilitaryRank",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientMotherBirthName",
    "PatientSize",
    "PatientWeight",
    "PerformedProcedureStepDescription",
    "PersonAddress",
    "PersonTelephoneNumbers",
    "PregnancyStatus",
    "ReasonForStudy",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedProcedureDescription",
    "RequestingPhysician",
    "ScheduledPerformingPhysicianName",
    "SmokingStatus",
    "SpecialNeeds",
    "StudyComments",
    "TextComments",
    "TextString",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientTelephoneNumbers",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "InstitutionalDepartmentName",
)
# Type 2 attributes the profile empties (Z): they must stay present but say nothing.
_EMPTY = ("PatientBirthDate",)


@dataclass(frozen=True)
class DeidentifiedFile:
    """A de-identified Part 10 file spooled to a temporary file (seekable, at position 0)."""

    file: IO[bytes]
    burned_in_annotation: bool


class Deidentifier:
    """De-identifies the instances of one archive with one consistent mapping."""

    # Up to this size a de-identified file is kept in memory, bigger ones go to disk.
    SPOOL_BYTES = 16 * 1024 * 1024

    def __init__(self, seed: str | None = None) -> None:
        self._anonymizer = Anonymizer(seed=seed or secrets.token_hex(16))

    def deidentify(self, source: BinaryIO) -> DeidentifiedFile:
        """Read one Part 10 file and return its de-identified copy.

        One instance is decoded at a time (its pixel data bytes included, never decompressed),
        so memory grows with the largest single file, not with the study.
        """
        ds = pydicom.dcmread(source)
        burned_in = str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"
        self._anonymizer.anonymize(ds)
        ds.remove_private_tags()
        _strip(ds)
        _mark_profile(ds)
        out = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
        ds.save_as(out, enforce_file_format=True)
        out.seek(0)
        return DeidentifiedFile(out, burned_in)


def _strip(ds: Dataset) -> None:
    for keyword in _REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in _EMPTY:
        if keyword in ds:
            setattr(ds, keyword, "")
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                _strip(item)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _mark_profile(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 E.1 Basic Profile (dicognito); private tags removed"  # LO: 64 max
    # PS3.16 CID 7050: the Basic Profile; dates are shifted (no "retain dates" option claimed).
    ds.DeidentificationMethodCodeSequence = Sequence([_code("113100", "Basic Application Confidentiality Profile")])


def header(source: BinaryIO) -> Any:
    """The header of a Part 10 file without its pixel data (for DICOMDIR records)."""
    return pydicom.dcmread(source, stop_before_pixels=True)

"""Generated radiology reports for tests and the demo: a Comprehensive SR with sections of text,
and an Encapsulated PDF whose page is drawn with Pillow. Codes come from pydicom's code
dictionary (``pydicom.sr.codedict``), never typed in by hand.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from imaging.dicom.sr import ENCAPSULATED_PDF

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"

# (section heading, [text items]) with DICOM's concept codes: "History", "Findings", "Impressions".
Sections = Sequence[tuple[Code, Sequence[tuple[Code, str]]]]


def default_sections() -> Sections:
    return [
        (codes.DCM.History, [(codes.DCM.History, "Cough for three weeks. Smoker.")]),
        (codes.DCM.Findings, [(codes.DCM.Finding, "The lungs are clear. No pleural effusion."),
                              (codes.DCM.Finding, "Heart size is normal.")]),
        (codes.DCM.Impressions, [(codes.DCM.Impression, "Normal chest.")]),
    ]


def demo_ct_sections() -> Sections:
    """The demo CT's report (a contrast CT of the chest, read as normal)."""
    return [
        (codes.DCM.History, [(codes.DCM.History, "Persistent cough for six weeks. Former smoker.")]),
        (codes.DCM.Findings, [
            (codes.DCM.Finding, "Lungs: clear. No nodule, mass or consolidation."),
            (codes.DCM.Finding, "Pleura: no effusion."),
            (codes.DCM.Finding, "Heart and great vessels: normal size. The pulmonary arteries fill normally with contrast."),
            (codes.DCM.Finding, "Lymph nodes: none enlarged."),
        ]),
        (codes.DCM.Impressions, [(codes.DCM.Impression, "Normal CT of the chest. No cause for the cough is seen.")]),
    ]


DEMO_CT_PDF_LINES = (
    "St. Example Hospital - Department of Radiology",
    "CT chest with contrast",
    "",
    "Findings: lungs clear; no pleural effusion; heart and vessels normal;",
    "no enlarged lymph nodes.",
    "",
    "Impression: normal CT of the chest.",
    "",
    "Signed: Dr Sean Brennan, radiologist",
)


def _code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _base(sop_class: str, *, patient_id: str, patient_name: str, study_uid: str, series_uid: str | None,
          series_number: int, description: str, modality: str, date: dt.date) -> Dataset:
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid or generate_uid()
    ds.PatientID, ds.PatientName = patient_id, patient_name
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, series_number, 1
    ds.SeriesDescription = description
    ds.StudyDate = ds.ContentDate = date.strftime("%Y%m%d")
    ds.ContentTime = "101500"
    return ds


def write_sr(path: Path, *, patient_id: str, study_uid: str, patient_name: str = "TEST^PATIENT",
             sections: Sections | None = None, title: Code | None = None, observer: str = "Okafor^Ngozi^^Dr",
             series_number: int = 90, date: dt.date | None = None) -> Path:
    """A Comprehensive SR of sections of text items (``default_sections`` when None)."""
    ds = _base(COMPREHENSIVE_SR, patient_id=patient_id, patient_name=patient_name, study_uid=study_uid, series_uid=None,
               series_number=series_number, description="RADIOLOGY REPORT", modality="SR", date=date or dt.date(2026, 4, 14))
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = DicomSequence([_code(title or codes.LN.DiagnosticImagingReport)])
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer_item = Dataset()
    observer_item.VerifyingObserverName = observer
    observer_item.VerifyingOrganization = "Radiology"
    observer_item.VerificationDateTime = ds.ContentDate + "101500"
    observer_item.VerifyingObserverIdentificationCodeSequence = DicomSequence([])
    ds.VerifyingObserverSequence = DicomSequence([observer_item])
    content = []
    for heading, items in sections if sections is not None else default_sections():
        container = Dataset()
        container.RelationshipType, container.ValueType, container.ContinuityOfContent = "CONTAINS", "CONTAINER", "SEPARATE"
        container.ConceptNameCodeSequence = DicomSequence([_code(heading)])
        children = []
        for concept, text in items:
            child = Dataset()
            child.RelationshipType, child.ValueType = "CONTAINS", "TEXT"
            child.ConceptNameCodeSequence = DicomSequence([_code(concept)])
            child.TextValue = text
            children.append(child)
        container.ContentSequence = DicomSequence(children)
        content.append(container)
    ds.ContentSequence = DicomSequence(content)
    ds.save_as(path, enforce_file_format=True)
    return path


def pdf_page(lines: Sequence[str]) -> bytes:
    """A one-page PDF showing ``lines`` (drawn with Pillow: a picture of the text)."""
    page = Image.new("RGB", (850, 1100), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 28 * i), line, fill="black", font_size=20)
    out = io.BytesIO()
    page.save(out, "PDF", resolution=100.0)
    return out.getvalue()


def write_pdf(path: Path, *, patient_id: str, study_uid: str, patient_name: str = "TEST^PATIENT",
              title: str = "Radiology report", lines: Sequence[str] = ("Radiology report", "Normal chest."),
              pdf: bytes | None = None, series_number: int = 91, date: dt.date | None = None) -> Path:
    """An Encapsulated PDF of ``pdf`` (a page of ``lines`` when None)."""
    ds = _base(ENCAPSULATED_PDF, patient_id=patient_id, patient_name=patient_name, study_uid=study_uid, series_uid=None,
               series_number=series_number, description="REPORT PDF", modality="DOC", date=date or dt.date(2026, 4, 14))
    ds.ConversionType = "WSD"
    ds.DocumentTitle = title
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    data = pdf if pdf is not None else pdf_page(lines)
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    ds.ConceptNameCodeSequence = DicomSequence([])
    ds.save_as(path, enforce_file_format=True)
    return path

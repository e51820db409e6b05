"""Writing a DICOMDIR (PS3.10 / PS3.3 F) for the files of an export archive (IHE PDI layout).

The records (PATIENT > STUDY > SERIES > IMAGE) are built from facts the packager collected while
it streamed each file, so the DICOMDIR never needs the files themselves again. File IDs are
names we made (``DICOM/ST0001/SE0001/IM000001``), never header values (SECURITY.md 16).

Record offsets are byte positions inside the DICOMDIR file. They are 4-byte fields, so a
record's encoded length does not depend on their values: we encode each record once to learn
its length, compute every offset, then write the file (the same approach as pydicom's
``FileSet``, which we cannot use directly because it insists on naming the files itself).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

_IN_USE = 0xFFFF
# Explicit VR little endian encodings of the fixed parts we write or patch by hand.
_NEXT_HEADER = b"\x04\x00\x00\x14UL\x04\x00"  # (0004,1400) UL, 4 bytes
_LOWER_HEADER = b"\x04\x00\x20\x14UL\x04\x00"  # (0004,1420) UL, 4 bytes
_SEQUENCE_HEADER = b"\x04\x00\x20\x12SQ\x00\x00\xff\xff\xff\xff"  # (0004,1220), undefined length
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


@dataclass(frozen=True)
class Entry:
    """One file of the archive as its DICOMDIR IMAGE record describes it."""

    file_id: tuple[str, ...]  # e.g. ("DICOM", "ST0001", "SE0001", "IM000001")
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    study_id: str
    accession: str
    series_uid: str
    modality: str
    series_number: int | None
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    instance_number: int | None


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def entry_from_header(ds: Any, file_id: tuple[str, ...]) -> Entry:
    """The DICOMDIR facts of one instance, taken from its (possibly de-identified) header."""
    meta = getattr(ds, "file_meta", None) or {}
    return Entry(
        file_id=file_id,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        study_id=_text(ds, "StudyID"),
        accession=_text(ds, "AccessionNumber"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality") or "OT",
        series_number=_int(ds, "SeriesNumber"),
        sop_class=_text(ds, "SOPClassUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        transfer_syntax=str(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)),
        instance_number=_int(ds, "InstanceNumber"),
    )


class _Node:
    def __init__(self, record: Dataset) -> None:
        self.record = record
        self.children: list[_Node] = []
        self.offset = 0

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def _record(kind: str) -> Dataset:
    ds = Dataset()
    ds.OffsetOfTheNextDirectoryRecord = 0
    ds.RecordInUseFlag = _IN_USE
    ds.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    ds.DirectoryRecordType = kind
    return ds


def _tree(entries: list[Entry]) -> list[_Node]:
    patients: dict[str, _Node] = {}
    studies: dict[str, _Node] = {}
    series: dict[str, _Node] = {}
    roots: list[_Node] = []
    for e in entries:
        patient = patients.get(e.patient_id)
        if patient is None:
            rec = _record("PATIENT")
            rec.PatientID = e.patient_id
            rec.PatientName = e.patient_name
            patient = patients[e.patient_id] = _Node(rec)
            roots.append(patient)
        study = studies.get(e.study_uid)
        if study is None:
            rec = _record("STUDY")
            rec.StudyDate = e.study_date
            rec.StudyTime = e.study_time
            rec.StudyDescription = e.study_description
            rec.StudyInstanceUID = e.study_uid
            rec.StudyID = e.study_id
            rec.AccessionNumber = e.accession
            study = studies[e.study_uid] = _Node(rec)
            patient.children.append(study)
        ser = series.get(e.series_uid)
        if ser is None:
            rec = _record("SERIES")
            rec.Modality = e.modality
            rec.SeriesInstanceUID = e.series_uid
            rec.SeriesNumber = e.series_number if e.series_number is not None else ""
            ser = series[e.series_uid] = _Node(rec)
            study.children.append(ser)
        rec = _record("IMAGE")
        rec.ReferencedFileID = list(e.file_id)
        rec.ReferencedSOPClassUIDInFile = e.sop_class
        rec.ReferencedSOPInstanceUIDInFile = e.sop_uid
        rec.ReferencedTransferSyntaxUIDInFile = e.transfer_syntax
        rec.InstanceNumber = e.instance_number if e.instance_number is not None else ""
        ser.children.append(_Node(rec))
    return roots


def _encode(record: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, record)
    return fp.getvalue()


def write_dicomdir(out: BinaryIO, entries: list[Entry], *, fileset_id: str = "LIGHTBOX") -> None:
    """Write a complete DICOMDIR describing ``entries`` (in archive order) to ``out``."""
    roots = _tree(entries)
    ds = Dataset()
    ds.FileSetID = fileset_id[:16]
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    # Random (2.25.<uuid>): derived from nothing in the studies.
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    write_dataset(fp, ds)  # everything before (0004,1220), whose offsets are fixed-size

    # Records are written in depth-first order, each encoded once: the sequence header (tag, VR,
    # reserved, undefined length) is 12 bytes in explicit VR, each item header 8 bytes. The
    # offset elements are the record's first (0004,1400) and third (0004,1420) elements, so
    # their values sit at fixed places in its encoding and are patched in afterwards.
    nodes = [node for root in roots for node in root.walk()]
    encoded = [bytearray(_encode(node.record)) for node in nodes]
    offset = fp.tell() + 12
    for node, data in zip(nodes, encoded, strict=True):
        node.offset = offset
        offset += 8 + len(data)
    index = {id(node): i for i, node in enumerate(nodes)}
    for siblings in [roots] + [node.children for node in nodes]:
        for i, node in enumerate(siblings):
            data = encoded[index[id(node)]]
            if data[:8] != _NEXT_HEADER or data[22:30] != _LOWER_HEADER:
                raise ValueError("unexpected directory record layout")
            struct.pack_into("<I", data, 8, siblings[i + 1].offset if i + 1 < len(siblings) else 0)
            struct.pack_into("<I", data, 30, node.children[0].offset if node.children else 0)
    if roots:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = roots[0].offset
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = roots[-1].offset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    write_dataset(fp, ds)
    fp.write(_SEQUENCE_HEADER)
    for data in encoded:
        fp.write(_ITEM_TAG + struct.pack("<I", len(data)))
        fp.write(bytes(data))
    fp.write(_SEQUENCE_END)
    out.write(fp.getvalue())


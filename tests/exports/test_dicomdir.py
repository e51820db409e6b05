"""The export's hand-written DICOMDIR writer (exports/dicomdir.py) against pydicom as the reader:
pydicom's FileSet follows every record offset, so a wrong one fails here."""

from __future__ import annotations

import dataclasses
import io

import pydicom
import pytest
from pydicom.fileset import FileSet

from exports.dicomdir import Entry, entry_from_header, write_dicomdir

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def entry(n: int, *, patient: str = "P1", name: str = "Doe^Jane", study: str = "1.2.3.1", series: str = "1.2.3.1.1",
          modality: str = "CT", series_number: int | None = 1) -> Entry:
    return Entry(
        file_id=("DICOM", "ST0001", "SE0001", f"IM{n:06d}"), patient_id=patient, patient_name=name, study_uid=study,
        study_date="20250101", study_time="090000", study_description="CT CHEST", study_id="", accession="A17",
        series_uid=series, modality=modality, series_number=series_number, sop_class=CT if modality == "CT" else MR,
        sop_uid=f"1.2.3.9.{n}", transfer_syntax="1.2.840.10008.1.2.1",
        instance_number=n,
    )


def read(entries: list[Entry], folder=None) -> pydicom.Dataset:
    out = io.BytesIO()
    write_dicomdir(out, entries)
    if folder is None:
        return pydicom.dcmread(io.BytesIO(out.getvalue()))
    (folder / "DICOMDIR").write_bytes(out.getvalue())  # FileSet wants a DICOMDIR on disk...
    for e in entries:  # ...and skips a record whose file is missing
        (folder / "/".join(e.file_id)).parent.mkdir(parents=True, exist_ok=True)
        (folder / "/".join(e.file_id)).touch()
    return pydicom.dcmread(folder / "DICOMDIR")


def walk(ds: pydicom.Dataset, offset: int | None = None) -> list:
    """[(record, [its children, likewise]), ...] by following the offsets alone."""
    at = {record.seq_item_tell: record for record in ds.DirectoryRecordSequence}
    offset = ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity if offset is None else offset
    siblings = []
    while offset:
        record = at[offset]
        siblings.append((record, walk(ds, record.OffsetOfReferencedLowerLevelDirectoryEntity)))
        offset = record.OffsetOfTheNextDirectoryRecord
    return siblings


def test_hierarchy_offsets_and_values_read_back_with_pydicom(tmp_path):
    entries = [entry(1), entry(2), entry(3, series="1.2.3.1.2", modality="MR", series_number=None),
               entry(4, study="1.2.3.2", series="1.2.3.2.1"), dataclasses.replace(
                   entry(5, patient="P2", name="Roe^Max", study="1.2.3.3", series="1.2.3.3.1"), instance_number=None)]
    ds = read(entries, tmp_path)
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.FileSetID == "LIGHTBOX" and ds.FileSetConsistencyFlag == 0

    assert len(FileSet(ds)) == 5  # pydicom follows the offsets: a wrong one raises or loses a record
    tree = walk(ds)
    assert [str(p.PatientName) for p, _ in tree] == ["Doe^Jane", "Roe^Max"]
    (patient, studies), _ = tree
    assert patient.PatientID == "P1"
    assert [s.StudyInstanceUID for s, _ in studies] == ["1.2.3.1", "1.2.3.2"]
    study, series = studies[0]
    assert [s.SeriesInstanceUID for s, _ in series] == ["1.2.3.1.1", "1.2.3.1.2"]
    assert series[1][0].Modality == "MR" and series[1][0].SeriesNumber is None
    images = [image for image, _ in series[0][1]]
    assert [r.ReferencedSOPInstanceUIDInFile for r in images] == ["1.2.3.9.1", "1.2.3.9.2"]
    assert images[0].ReferencedFileID == ["DICOM", "ST0001", "SE0001", "IM000001"]
    assert images[0].ReferencedSOPClassUIDInFile == CT and images[0].InstanceNumber == 1
    assert images[0].ReferencedTransferSyntaxUIDInFile == "1.2.840.10008.1.2.1"
    assert (study.StudyDate, study.StudyTime, study.AccessionNumber, study.StudyDescription) == (
        "20250101", "090000", "A17", "CT CHEST")
    assert tree[1][1][0][1][0][1][0][0].InstanceNumber is None
    # Root offsets point at the first and last PATIENT records.
    records = ds.DirectoryRecordSequence
    assert records[0].DirectoryRecordType == "PATIENT"
    assert ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == records[0].seq_item_tell
    last_patient = [r for r in records if r.DirectoryRecordType == "PATIENT"][-1]
    assert ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == last_patient.seq_item_tell


def test_every_element_is_written_as_pydicom_would_write_it():
    """Each record, re-encoded by pydicom from what it read, gives back our bytes: lengths,
    padding and tag order all as PS3.5 says."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    out = io.BytesIO()
    write_dicomdir(out, [entry(1), entry(2, series_number=None)])
    raw = out.getvalue()
    ds = pydicom.dcmread(io.BytesIO(raw))
    for record in ds.DirectoryRecordSequence:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, record)
        ours = raw[record.seq_item_tell + 8: record.seq_item_tell + 8 + len(fp.getvalue())]
        assert ours == fp.getvalue(), record.DirectoryRecordType


def test_non_ascii_names_are_utf8_and_declared():
    ds = read([entry(1, name="Łukasiewicz^Zoë")])
    patient = ds.DirectoryRecordSequence[0]
    assert patient.SpecificCharacterSet == "ISO_IR 192"
    patient.decode()
    assert str(patient.PatientName) == "Łukasiewicz^Zoë"
    assert "SpecificCharacterSet" not in ds.DirectoryRecordSequence[1]  # the STUDY record is plain ASCII


def test_an_empty_archive_has_an_empty_directory():
    ds = read([])
    assert len(ds.DirectoryRecordSequence) == 0
    assert ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == 0


def test_every_dicomdir_has_its_own_instance_uid():
    assert read([entry(1)]).file_meta.MediaStorageSOPInstanceUID != read([entry(1)]).file_meta.MediaStorageSOPInstanceUID


def test_a_value_too_long_for_its_element_is_refused():
    with pytest.raises(ValueError, match="too long"):
        write_dicomdir(io.BytesIO(), [entry(1, name="x" * 70_000)])


def test_entry_from_a_header_reads_a_pydicom_dataset(tmp_path):
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    e = entry_from_header(ds, ("DICOM", "ST0001", "SE0001", "IM000001"))
    assert (e.sop_uid, e.series_uid, e.study_uid) == (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID)
    assert e.modality == "CT" and e.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert e.instance_number == int(ds.InstanceNumber)

"""What this scan reveals: the header report over real files (pydicom's bundled test data),
driven by PS3.15 Table E.1-1, plus what OCR found in the pixels and faces in head volumes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from django.core.cache import cache
from django.test import Client
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imaging import selectors
from imaging.dicom import ps315, reveal
from imaging.dicom.synth import write_instance
from imaging.models import Instance, PixelText
from tests.imaging.conftest import sample_files
from tests.imaging.test_views import dicom_testfile, import_for


def group(report: dict, key: str) -> dict[str, dict]:
    return {item["key"]: item for item in report["groups"].get(key, [])}


def test_finds_name_birth_date_ids_address_institution_staff_device_and_dates():
    # examples_overlay.dcm: an MR from a Vienna hospital with a full patient header.
    report = reveal.build_report([("s1", dicom_testfile("examples_overlay.dcm"))])
    identity, contact, ids = group(report, "identity"), group(report, "contact"), group(report, "ids")
    assert identity["PatientName"]["values"] == ["Jsssss Sssssss"]
    assert identity["PatientBirthDate"]["values"] == ["1111-11-11"]
    assert identity["PatientSex"]["values"] == ["male"]
    assert identity["PatientAge"]["values"] == ["58 years"]
    assert contact["PatientAddress"]["values"] == ["Nr. 309, 3610, Weißenkirchen In Der Wachau, A"]
    assert ids["PatientID"]["values"] == ["021234567"]
    assert ids["AccessionNumber"]["values"] == ["8000000000330109"]
    place = group(report, "place")
    assert place["InstitutionName"]["values"] == ["AKH - WIEN"]
    assert "Wien" in place["InstitutionAddress"]["values"][0]
    assert group(report, "people")["OperatorsName"]["values"] == ["meduser"]
    assert group(report, "device")["DeviceSerialNumber"]["values"] == ["25641"]
    assert "2005-11-30" in group(report, "dates")["StudyDate"]["values"]
    assert group(report, "text")["StudyDescription"]["values"] == ["abdomen, liver"]
    assert report["private"]["elements"] > 0 and report["private"]["counts"] == {"s1": 1}
    assert report["overlays"] == {"s1": 1}
    assert report["burned_in"] == {"unstated": {"s1": 1}}


def test_counts_per_series_and_unreadable_files(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a scan")
    report = reveal.build_report(
        [
            ("ct", dicom_testfile("CT_small.dcm")),
            ("ct", dicom_testfile("CT_small.dcm")),
            ("mr", dicom_testfile("MR_small.dcm")),
            ("mr", str(junk)),
        ]
    )
    assert report["files"] == 4
    assert report["unreadable"] == 1
    assert report["series_files"] == {"ct": 2, "mr": 2}
    name = group(report, "identity")["PatientName"]
    assert name["counts"] == {"ct": 2, "mr": 1}
    assert sorted(name["values"]) == ["CT1 CompressedSamples", "MR1 CompressedSamples"]
    # The other IDs in CT_small's Other Patient IDs Sequence are found inside the sequence.
    assert sorted(group(report, "ids")["OtherPatientIDs"]["values"]) == ["1234ABCD", "ABCD1234"]
    # Private data: GE's private groups in the CT, counted per series, contents never shown.
    assert report["private"]["counts"] == {"ct": 2}
    assert "GEMS_IDEN_01" in report["private"]["creators"]


def test_burned_in_annotation_flag_is_reported(tmp_path):
    ds = pydicom.dcmread(dicom_testfile("MR_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    path = tmp_path / "burned.dcm"
    ds.save_as(path)
    report = reveal.build_report([("us", str(path)), ("us", dicom_testfile("MR_small.dcm"))])
    assert report["burned_in"] == {"yes": {"us": 1}, "unstated": {"us": 1}}
    groups = {g.key: g for g in reveal.present(report, {"us": "Series 1"})}
    burned = groups["burned_in"]
    assert burned.files == 1
    assert burned.items[0].label == "Marked as having text on the image"
    assert burned.items[0].per_series == [("Series 1", 1, 2)]


def test_names_in_unlisted_attributes_are_still_caught_by_their_value_representation():
    # test-SR.dcm names its verifying observers inside a sequence; reportsi.dcm a referring doctor.
    report = reveal.build_report([("sr", dicom_testfile("test-SR.dcm"))])
    people = group(report, "people")
    assert sorted(people["VerifyingObserverName"]["values"]) == ["Jörg Riesmeier", "Verifying Observer"]
    assert "A mass of" in group(report, "text")["TextValue"]["values"]


def test_present_groups_in_reading_order_with_plain_labels():
    report = reveal.build_report([("1", dicom_testfile("waveform_ecg.dcm"))])
    groups = reveal.present(report, {"1": "Series 1"})
    keys = [g.key for g in groups]
    assert keys[0] == "identity"
    assert keys == sorted(keys, key=list(reveal.GROUPS).index)
    identity = groups[0]
    labels = [item.label for item in identity.items]
    assert labels[:2] == ["Your name", "Date of birth"]
    assert identity.explanation


def test_reads_headers_only(monkeypatch):
    calls = []
    real = pydicom.dcmread

    def spy(*args, **kwargs):
        calls.append(kwargs.get("stop_before_pixels"))
        return real(*args, **kwargs)

    monkeypatch.setattr(reveal.pydicom, "dcmread", spy)
    reveal.build_report([("1", dicom_testfile("CT_small.dcm"))])
    assert calls == [True]


def test_simple_structured_report_text():
    text = reveal.report_text(dicom_testfile("test-SR.dcm"))
    assert text[0] == ("Diagnosis", "")
    assert ("Text Code", "A mass of") in text
    assert reveal.report_text(dicom_testfile("CT_small.dcm")) is None


def test_object_kinds():
    assert reveal.object_kind("1.2.840.10008.5.1.4.1.1.88.33", has_pixels=False) == "report"
    assert reveal.object_kind("1.2.840.10008.5.1.4.1.1.104.1", has_pixels=False) == "document"
    assert reveal.object_kind("1.2.840.10008.5.1.4.1.1.481.5", has_pixels=False) == "radiotherapy"
    assert reveal.object_kind("1.2.840.10008.5.1.4.1.1.9.1.1", has_pixels=False) == "waveform"
    assert reveal.object_kind("1.2.840.10008.5.1.4.1.1.2") == "image"
    assert reveal.sop_class_name("1.2.840.10008.5.1.4.1.1.88.33") == "Comprehensive SR"


@pytest.mark.django_db
def test_study_report_reads_the_stored_files_once_and_is_cached(patient, monkeypatch):
    study = import_for(patient, [dicom_testfile("MR_small.dcm")])
    cache.clear()
    calls = []
    real = reveal.build_report
    monkeypatch.setattr(reveal, "build_report", lambda files: calls.append(1) or real(files))
    report, groups = selectors.header_report_for_study(study)
    assert report["files"] == 1 and report["unreadable"] == 0
    series = study.series.get()
    name = next(g for g in groups if g.key == "identity").items[0]
    assert name.values == ["MR1 CompressedSamples"]
    assert name.per_series == [(f"Series {series.number} · {series.description or series.modality}", 1, 1)]
    selectors.header_report_for_study(study)
    assert len(calls) == 1


# --- One source of truth: PS3.15 Table E.1-1 ---------------------------------------------------


def test_every_row_of_the_table_has_a_group():
    from pydicom.datadict import dictionary_VR

    rules = ps315.table().rules
    assert len(rules) > 600  # the whole table, not a curated subset
    for rule in rules:
        group = reveal.group_for_rule(rule)
        assert group in reveal.GROUPS, (rule.name, group)
        assert reveal.label_for_rule(rule), rule
        try:
            vr = dictionary_VR(rule.tag) if rule.mask == 0xFFFFFFFF else ""
        except KeyError:
            vr = ""
        if vr == "UI" and rule.keyword not in reveal.ATTRIBUTES:
            assert group == "uids", rule.name
        if vr in {"DA", "DT", "TM"} and rule.keyword not in reveal.ATTRIBUTES:
            assert group == "dates", rule.name
        if vr == "PN":
            assert group in {"identity", "people", "contact"}, rule.name


def _has_value(element) -> bool:
    value = element.value
    if value is None:
        return False
    if element.VR == "SQ" or isinstance(value, bytes | bytearray | list | MultiValue):
        if isinstance(value, MultiValue):
            return any(v is not None and str(v).strip(" \0^=\\") for v in value)
        return len(value) > 0
    return bool(str(value).strip(" \0^=\\"))


def _tag(tag: int) -> str:
    group = tag >> 16
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
        return f"({group >> 8:02X}xx,{tag & 0xFFFF:04X})"
    return f"({group:04X},{tag & 0xFFFF:04X})"


def _expected(ds: Dataset) -> tuple[set[str], int]:
    """Walked here, independently of reveal: every public element with a table rule and a value,
    at any depth (inside private sequences too), and the number of private data elements."""
    public: set[str] = set()
    private = 0

    def walk(items):
        nonlocal private
        for element in items:
            if element.tag.is_private:
                if not element.tag.is_private_creator:
                    private += 1
            elif ps315.rule_for(int(element.tag)) is not None and _has_value(element):
                public.add(_tag(int(element.tag)))
            if element.VR == "SQ":
                for item in element.value or []:
                    walk(item)

    walk(getattr(ds, "file_meta", None) or [])
    walk(ds)
    return public, private


def _reported_tags(report: dict) -> set[str]:
    return {tag for entries in report["groups"].values() for entry in entries for tag in entry["tags"]}


def test_every_table_attribute_in_every_bundled_file_is_reported():
    checked = attributes = 0
    for path in sample_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                expected, private = _expected(ds)
            except Exception:  # noqa: BLE001 - not a readable DICOM file; reveal counts it as unreadable
                continue
            report = reveal.build_report([("s", str(path))])
        assert report["unreadable"] == 0, path.name
        missing = expected - _reported_tags(report)
        assert not missing, (path.name, sorted(missing))
        assert report["private"]["elements"] == private, path.name
        checked += 1
        attributes += len(expected)
    assert checked > 100 and attributes > 1000, (checked, attributes)


def test_attributes_inside_private_sequences_are_reported():
    # nested_priv_SQ.dcm: private sequences two deep; UN_sequence.dcm: public UIDs inside a private sequence.
    report = reveal.build_report([("s", dicom_testfile("UN_sequence.dcm"))])
    uids = group(report, "uids")
    assert uids["ReferencedSOPInstanceUID"]["values"] == ["1.2.840.113619.2.327.3.185221411.476.1398588726.278.80"]
    assert "1.2.840.113619.2.327.3.185221411.476.1398588726.276" in uids["SeriesInstanceUID"]["values"]


def _all_missed_attributes(path: Path) -> Path:
    """One file holding every attribute the issue lists as missed, some inside sequences, with a
    curve, an overlay and a private sequence that names the patient and someone else."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = "CT_SCANNER_3"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MRN12345"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesTime = "101500"
    ds.ContentTime = "101512.25"
    ds.InstanceCreationTime = "101600"
    ds.PerformedProcedureStepStartTime = "100000"
    ds.TimezoneOffsetFromUTC = "+0100"
    ds.RequestingService = "ORTHOPAEDICS WARD 7"
    ds.ContrastBolusAgent = "OMNIPAQUE 350"
    ds.ScheduledProcedureStepSequence = [Dataset()]
    ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription = "CT KNEE LEFT"
    ds.RTPlanLabel = "KNEE PLAN 1"
    ds.RTPlanName = "Knee boost"
    ds.BeamSequence = [Dataset()]
    ds.BeamSequence[0].TreatmentMachineName = "LINAC3"
    ds.PerformedStationAETitle = "CTSCAN3"
    ds.VerifyingObserverSequence = [Dataset()]
    ds.VerifyingObserverSequence[0].VerifyingOrganization = "ST ELSEWHERE RADIOLOGY"
    ds.DeviceSequence = [Dataset()]
    ds.DeviceSequence[0].DeviceDescription = "Knee coil"
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = ds.SOPClassUID
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.add_new(0x50000022, "LO", "ECG of Jane Doe")
    ds.add_new(0x50003000, "OW", b"\x00\x01\x00\x02")
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", "Doe knee marks")
    ds.add_new(0x60001500, "LO", "LEFT KNEE JD")
    ds.add_new(0x60004000, "LT", "Measured by Dr House")
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    inner = Dataset()
    inner.OperatorsName = "TECH^TERRY"
    block = inner.private_block(0x0031, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "study of Jane Doe")
    block.add_new(0x02, "PN", "SMITH^JOHN")
    block.add_new(0x03, "LO", "MRN12345/knee")
    block.add_new(0x04, "LO", "NOT A NAME 12")
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "SQ", [inner])
    ds.save_as(path, enforce_file_format=True)
    return path


def test_every_attribute_the_issue_lists_as_missed_is_reported(tmp_path):
    report = reveal.build_report([("s", str(_all_missed_attributes(tmp_path / "missed.dcm")))])
    dates, place, text, device, uids = (group(report, k) for k in ("dates", "place", "text", "device", "uids"))
    assert dates["SeriesTime"]["values"] == ["10:15:00"]
    assert dates["ContentTime"]["values"] == ["10:15:12"]
    assert dates["InstanceCreationTime"]["values"] == ["10:16:00"]
    assert dates["PerformedProcedureStepStartTime"]["values"] == ["10:00:00"]
    assert dates["TimezoneOffsetFromUTC"]["values"] == ["+0100"]
    assert place["RequestingService"]["values"] == ["ORTHOPAEDICS WARD 7"]
    assert place["PerformedStationAETitle"]["values"] == ["CTSCAN3"]
    assert place["VerifyingOrganization"]["values"] == ["ST ELSEWHERE RADIOLOGY"]
    assert place["SourceApplicationEntityTitle"]["values"] == ["CT_SCANNER_3"]
    assert group(report, "health")["ContrastBolusAgent"]["values"] == ["OMNIPAQUE 350"]
    assert text["ScheduledProcedureStepDescription"]["values"] == ["CT KNEE LEFT"]
    assert text["RTPlanLabel"]["values"] == ["KNEE PLAN 1"]
    assert text["RTPlanName"]["values"] == ["Knee boost"]
    assert device["TreatmentMachineName"]["values"] == ["LINAC3"]
    assert device["DeviceDescription"]["values"] == ["Knee coil"]
    for key in ("SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID", "FrameOfReferenceUID"):
        assert len(uids[key]["values"]) == 1, key
    assert uids["ReferencedSOPInstanceUID"]["values"] == ["1.2.3.4.5.6.7"]
    graphics = group(report, "graphics")
    assert graphics["CurveDescription"]["values"] == ["ECG of Jane Doe"]
    assert graphics["CurveData"]["tags"] == ["(50xx,3000)"]
    assert graphics["OverlayDescription"]["values"] == ["Doe knee marks"]
    assert graphics["OverlayLabel"]["values"] == ["LEFT KNEE JD"]
    assert graphics["OverlayComments"]["values"] == ["Measured by Dr House"]
    assert graphics["OverlayData"]["counts"] == {"s": 1}
    # Inside the private sequence: a public name is a name, and private values naming someone
    # (a PN, the patient's own name, the patient's ID) are shown; the rest stays a count.
    assert group(report, "people")["OperatorsName"]["values"] == ["TERRY TECH"]
    private = group(report, "private")
    assert sorted(private["PrivateName"]["values"]) == ["JOHN SMITH", "study of Jane Doe"]
    assert private["PrivatePatientID"]["values"] == ["MRN12345/knee"]
    assert report["private"]["elements"] == 5  # the sequence and its four values
    assert not any("NOT A NAME" in v for entries in report["groups"].values() for e in entries for v in e["values"])

    groups = {g.key: g for g in reveal.present(report, {"s": "Series 1"})}
    labels = {item.label: item for item in groups["private"].items}
    assert labels["A name inside manufacturer-specific data"].values == private["PrivateName"]["values"]
    assert "Time of the series" in [i.label for i in groups["dates"].items]
    assert "Curve description" in [i.label for i in groups["graphics"].items]
    # Study, series, image (= the file meta's), frame of reference and the referenced image.
    assert groups["uids"].note.startswith("5 unique identifiers in all")
    assert "links a file straight back to your record" in groups["uids"].explanation


def test_an_unlabelled_table_row_is_labelled_with_the_tables_name(tmp_path):
    ds = pydicom.dcmread(dicom_testfile("MR_small.dcm"))
    ds.StudyArrivalDate = "20240102"  # a table row with no curated label
    ds.OrderCallbackPhoneNumber = "+44 20 7946 0000"
    path = tmp_path / "f.dcm"
    ds.save_as(path)
    report = reveal.build_report([("s", str(path))])
    groups = {g.key: {i.label: i for i in g.items} for g in reveal.present(report, {"s": "Series 1"})}
    assert groups["dates"]["Study Arrival Date"].values == ["2024-01-02"]
    assert groups["contact"]["Order Callback Phone Number"].values == ["+44 20 7946 0000"]


# --- Text in the pixels (OCR results) and faces, on the study page -----------------------------


def _series(folder: Path, n: int, *, patient_id: str, values: dict) -> list[Path]:
    study_uid, series_uid = generate_uid(), generate_uid()
    return [
        write_instance(folder / f"{i:03d}.dcm", patient_id=patient_id, study_uid=study_uid, series_uid=series_uid,
                       values={"InstanceNumber": i + 1, **values}, seed=i)
        for i in range(n)
    ]


@pytest.mark.django_db
def test_text_read_in_the_pixels_is_said_on_the_study_page(patient_client: Client, patient, tmp_path):
    paths = _series(tmp_path / "us", 33, patient_id="LBX-US-1", values={"Modality": "US", "SeriesDescription": "Liver"})
    study = import_for(patient, paths)
    instances = list(Instance.objects.filter(series__study=study).order_by("number"))
    assert len(instances) == 33
    for instance in instances[:30]:
        PixelText.objects.update_or_create(instance=instance, defaults={
            "status": "found", "engine": "tesseract 5.3.0", "frames_checked": 1, "kinds": ["patient_id", "date"],
            "regions": [{"frame": 0, "box": [2, 2, 40, 8], "text": "ID LBX-US-1", "kinds": ["patient_id"]},
                        {"frame": 0, "box": [2, 12, 40, 8], "text": "2024-01-02", "kinds": ["date"]}]})
    PixelText.objects.update_or_create(instance=instances[30], defaults={"status": "none", "frames_checked": 1})
    PixelText.objects.update_or_create(instance=instances[31], defaults={"status": "not_checked", "reason": "The pixels cannot be decoded."})
    PixelText.objects.filter(instance=instances[32]).delete()

    html = patient_client.get(f"/studies/{study.pk}/").content.decode()
    assert "Your hospital number is printed on 30 ultrasound images." in html
    assert "A date is printed on 30 ultrasound images." in html
    assert "ID LBX-US-1" in html
    assert "Text was found on 30 ultrasound images." in html
    assert "No text was found on 1 ultrasound image." in html
    assert "1 ultrasound image could not be checked for text." in html
    assert "The pixels cannot be decoded." in html
    assert "1 ultrasound image has not been checked for text yet." in html
    assert "Your name is printed" not in html
    # The header's own flag is still reported beside what OCR found.
    assert "Marked as having no text on the image" in html

    # OCR results are not part of the cached header report: a new result shows at once.
    PixelText.objects.filter(instance=instances[30]).update(status="found", kinds=["name"], regions=[])
    _, groups = selectors.header_report_for_study(study)
    burned = next(g for g in groups if g.key == "burned_in")
    assert "Your name is printed on 1 ultrasound image." in [i.label for i in burned.items]
    assert burned.files == 31


@pytest.mark.django_db
def test_a_head_ct_volume_says_a_face_can_be_rebuilt_and_a_chest_ct_does_not(patient, tmp_path):
    head = import_for(patient, _series(tmp_path / "head", 20, patient_id="LBX-FACE-1",
                                       values={"BodyPartExamined": "HEAD", "SeriesDescription": "Axial 1mm"}))
    _, groups = selectors.header_report_for_study(head)
    face = next(g for g in groups if g.key == "face")
    series = head.series.get()
    assert face.items[0].label == "A face can be rebuilt from this head scan"
    assert face.items[0].per_series == [(f"Series {series.number} · Axial 1mm", 20, 20)]
    assert "do not remove the face" in face.note

    chest = import_for(patient, _series(tmp_path / "chest", 20, patient_id="LBX-FACE-1",
                                        values={"BodyPartExamined": "CHEST", "SeriesDescription": "Axial 1mm"}))
    _, groups = selectors.header_report_for_study(chest)
    assert "face" not in [g.key for g in groups]
    few = import_for(patient, _series(tmp_path / "scout", 3, patient_id="LBX-FACE-1",
                                      values={"BodyPartExamined": "HEAD", "SeriesDescription": "Scout"}))
    _, groups = selectors.header_report_for_study(few)
    assert "face" not in [g.key for g in groups]

"""What this scan reveals: the header report over real files (pydicom's bundled test data)."""

from __future__ import annotations

import pydicom
import pytest
from django.core.cache import cache

from imaging import selectors
from imaging.dicom import reveal
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

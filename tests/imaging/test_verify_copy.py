"""Verify a copy: files a patient holds, compared with their own originals and never kept."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AccessEvent
from imaging import forms
from imaging.dicom import compare
from tests.conftest import login_password_only, login_verified
from tests.imaging.test_views import dicom_testfile, import_for, write_ct_series

pytestmark = pytest.mark.django_db
URL = "/verify/"


@pytest.fixture
def originals(patient, tmp_path) -> list[Path]:
    paths = write_ct_series(tmp_path / "mine", slices=2, patient_id="LBX-MINE")
    import_for(patient, paths)
    return paths


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/dicom")


def edited(path: Path, change) -> bytes:
    ds = pydicom.dcmread(path)
    change(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def check(client: Client, *files: SimpleUploadedFile):
    return client.post(URL, {"files": list(files)})


def results(response) -> dict[str, str]:
    return {r.name: r.outcome for r in response.context["results"]}


def test_identical_copy(patient_client: Client, originals):
    response = check(patient_client, upload("IM0001", originals[0].read_bytes()))
    assert response.status_code == 200
    assert results(response) == {"IM0001": "identical"}
    html = response.content.decode()
    assert "Identical to the original." in html
    assert "CT chest" in html


def test_header_changed_lists_the_attributes(patient_client: Client, originals):
    def rename(ds):
        ds.PatientName = "Someone^Else"
        ds.InstitutionName = "Elsewhere Clinic"

    response = check(patient_client, upload("renamed.dcm", edited(originals[0], rename)))
    assert results(response) == {"renamed.dcm": "modified"}
    difference = response.context["results"][0].difference
    assert {c.name for c in difference.changes} == {"Patient's Name", "Institution Name"}
    assert difference.pixels == "same"
    html = response.content.decode()
    assert "Different from the original." in html
    assert "Someone^Else" in html and "Elsewhere Clinic" in html
    assert "The picture is unchanged." in html


def test_pixels_changed(patient_client: Client, originals):
    def paint(ds):
        arr = ds.pixel_array.copy()
        arr[10:20, 10:20] = 0
        ds.PixelData = arr.tobytes()

    response = check(patient_client, upload("painted.dcm", edited(originals[1], paint)))
    result = response.context["results"][0]
    assert result.outcome == "modified"
    assert result.difference.pixels == "changed"
    assert not result.difference.header_changed
    assert 0 < result.difference.pixels_changed_fraction < 0.05
    assert "The picture itself was changed." in response.content.decode()


def test_new_image_claiming_to_be_in_my_study(patient_client: Client, originals):
    response = check(patient_client, upload("extra.dcm", edited(originals[0], lambda ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))))
    assert results(response) == {"extra.dcm": "same_study"}


def test_another_patients_file_is_unknown_and_reveals_nothing(patient_client: Client, originals, other_patient, tmp_path):
    theirs = write_ct_series(tmp_path / "theirs", slices=1, patient_id="LBX-THEIRS")
    study = import_for(other_patient, theirs)
    study.description = "Their private knee MRI"
    study.save()
    byte_copy = upload("theirs.dcm", theirs[0].read_bytes())
    edited_copy = upload("theirs-edited.dcm", edited(theirs[0], lambda ds: setattr(ds, "PatientName", "X^Y")))
    response = check(patient_client, byte_copy, edited_copy)
    assert results(response) == {"theirs.dcm": "unknown", "theirs-edited.dcm": "unknown"}
    html = response.content.decode()
    assert "Their private knee MRI" not in html
    assert f"/studies/{study.pk}/" not in html
    assert "Not found in your records." in html


def test_not_dicom_and_a_mixed_batch(patient_client: Client, originals):
    response = check(
        patient_client,
        upload("photo.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 500),
        upload("IM0001", originals[0].read_bytes()),
        upload("empty.dcm", b""),
    )
    assert results(response) == {"photo.jpg": "not_dicom", "IM0001": "identical", "empty.dcm": "not_dicom"}
    assert "Not a scan file." in response.content.decode()


def test_one_access_event_per_check_with_counts_only(patient_client: Client, originals, patient):
    before = AccessEvent.objects.count()
    check(patient_client, upload("a", originals[0].read_bytes()), upload("b", originals[1].read_bytes()), upload("c.txt", b"hello"))
    assert AccessEvent.objects.count() == before + 1
    event = AccessEvent.objects.latest("pk")
    assert event.action == "query" and event.patient_id == patient.patient.pk and event.study_id is None
    assert event.details == {"page": "verify_copy", "files": 3, "identical": 2, "not_dicom": 1}


def test_get_shows_the_form_and_records_nothing(patient_client: Client):
    before = AccessEvent.objects.count()
    response = patient_client.get(URL)
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in response.content.decode()
    assert 'multiple' in response.content.decode()
    assert AccessEvent.objects.count() == before


def test_no_file_is_a_clear_error(patient_client: Client):
    response = patient_client.post(URL, {})
    assert response.status_code == 400
    assert "Choose at least one file to check." in response.content.decode()
    assert response.context["results"] is None


def test_too_large_file_is_refused_while_uploading(patient_client: Client, originals, monkeypatch):
    monkeypatch.setattr(forms, "MAX_FILE_BYTES", 1024)
    response = check(patient_client, upload("big.dcm", originals[0].read_bytes()))
    assert response.status_code == 400
    assert "big.dcm is larger than 1.0\xa0KB" in response.content.decode()
    assert "Choose at least one file" not in response.content.decode()


def test_too_large_in_total_is_refused(patient_client: Client, originals, monkeypatch):
    monkeypatch.setattr(forms, "MAX_TOTAL_BYTES", 2048)
    response = check(patient_client, upload("a.dcm", originals[0].read_bytes()), upload("b.dcm", originals[1].read_bytes()))
    assert response.status_code == 400
    assert "Together the files are larger than" in response.content.decode()


def test_uploads_are_not_kept(patient_client: Client, originals, settings, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # force temporary files on disk
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    response = check(patient_client, upload("IM0001", originals[0].read_bytes()))
    assert results(response) == {"IM0001": "identical"}
    assert list(uploads.iterdir()) == []


def test_csrf_is_required(patient, originals):
    client = Client(enforce_csrf_checks=True)
    login_verified(client, patient)
    response = client.post(URL, {"files": [upload("IM0001", originals[0].read_bytes())]})
    assert response.status_code == 403
    assert AccessEvent.objects.filter(action="query").count() == 0


def test_anonymous_is_sent_to_login(client: Client):
    assert client.get(URL)["Location"].startswith("/accounts/login/")
    assert client.post(URL)["Location"].startswith("/accounts/login/")


def test_password_only_session_is_sent_to_the_second_factor(client: Client, unverified_user):
    login_password_only(client, unverified_user)
    for response in (client.get(URL), client.post(URL, {"files": [upload("x", b"x")]})):
        assert response.status_code == 302
        assert response["Location"].startswith("/account/2fa/")
    assert AccessEvent.objects.count() == 0


def test_wrong_method_is_405(patient_client: Client):
    assert patient_client.put(URL).status_code == 405
    assert patient_client.delete(URL).status_code == 405


# --- compare.py on plain files ----------------------------------------------------------------


def test_reencoded_without_loss_is_the_same_picture():
    original = Path(dicom_testfile("CT_small.dcm")).read_bytes()
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.compress(pydicom.uid.RLELossless, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out)
    difference = compare.diff_files(io.BytesIO(out.getvalue()), io.BytesIO(original))
    assert difference.transfer_syntax_changed
    assert difference.pixels == "same_picture"


def test_inspect_upload_fingerprints_and_identifies():
    data = Path(dicom_testfile("MR_small.dcm")).read_bytes()
    facts = compare.inspect_upload(io.BytesIO(data))
    import hashlib

    assert facts.is_dicom and facts.sha256 == hashlib.sha256(data).hexdigest() and facts.size == len(data)
    assert facts.sop_uid == str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    assert not compare.inspect_upload(io.BytesIO(np.arange(100, dtype=np.uint8).tobytes())).is_dicom


def _deidentified_copy(originals: list[Path], *, export_ref: int = 7) -> list[bytes]:
    """De-identify the originals as an export does and record them the way the exporter does."""
    from imaging.copies import CopyRecord, deidentified_copies_record
    from imaging.dicom.deidentify import Deidentifier
    from imaging.models import Instance

    deidentifier = Deidentifier()
    files, records = [], []
    for path in originals:
        with path.open("rb") as fh:
            out = deidentifier.deidentify(fh)
        with out.file as spooled:
            files.append(spooled.read())
        original = Instance.objects.get(sop_uid=out.original_sop_uid)
        records.append(CopyRecord(out.sop_uid, original.pk, out.pixel_sha256, out.pixels_masked))
    deidentified_copies_record(records=records, export_ref=export_ref,
                               made_at=dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC))
    return files


def test_a_file_from_my_own_deidentified_copy_is_recognised(patient_client: Client, originals):
    copy = _deidentified_copy(originals)
    assert pydicom.dcmread(io.BytesIO(copy[0])).PatientIdentityRemoved == "YES"
    response = check(patient_client, upload("IM000001", copy[0]))
    assert results(response) == {"IM000001": "deidentified_copy"}
    result = response.context["results"][0]
    assert result.pixels_match is True
    html = response.content.decode()
    assert "From your de-identified copy." in html
    assert "This is from your de-identified copy of “CT chest” made on 20 Nov 2026" in html
    assert "Its pixels match the original." in html
    assert "Not found in your records" not in html


def test_a_deidentified_copy_whose_picture_was_changed_says_so(patient_client: Client, originals):
    def paint(ds):
        arr = ds.pixel_array.copy()
        arr[0:8, 0:8] = 0
        ds.PixelData = arr.tobytes()

    copy = _deidentified_copy(originals)
    ds = pydicom.dcmread(io.BytesIO(copy[1]))
    paint(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    response = check(patient_client, upload("painted", out.getvalue()))
    assert response.context["results"][0].outcome == "deidentified_copy"
    assert response.context["results"][0].pixels_match is False
    assert "the picture was changed after it was exported" in response.content.decode()


def test_another_patients_deidentified_copy_is_unknown(patient_client: Client, other_patient, tmp_path):
    theirs = write_ct_series(tmp_path / "theirs", slices=1, patient_id="LBX-THEIRS")
    import_for(other_patient, theirs)
    copy = _deidentified_copy(theirs)
    response = check(patient_client, upload("theirs", copy[0]))
    assert results(response) == {"theirs": "unknown"}
    assert "de-identified copy" not in response.content.decode()

"""The archive a patient receives: opened with 7-Zip and the passphrase, checked file by file
against MANIFEST.json and the stored originals, signature verified, DICOMDIR read by pydicom;
de-identified copies carry no identity in any header."""

from __future__ import annotations

import re

import pydicom
import pytest
from django.core import mail

from audit.models import AccessEvent
from exports import services
from exports.models import ExportRequest
from imaging.models import Instance
from tests.conftest import reauthenticate
from tests.exports.conftest import (
    ADDRESS,
    BIRTH,
    FAMILY,
    GIVEN,
    INSTITUTION_ADDRESS,
    PERFORMING,
    REFERRING,
    encryption_methods,
    header_texts,
    make_study,
    open_with_7z,
    verify_archive,
)

pytestmark = pytest.mark.django_db


def request_export(client, *, kind: str = "original", studies=None) -> tuple[ExportRequest, str]:
    reauthenticate(client)
    data = {"scope": "all", "kind": kind}
    if studies:
        data = {"scope": "selected", "studies": [str(s.pk) for s in studies], "kind": kind}
    response = client.post("/exports/new/", data)
    assert response.status_code == 200, response.content[:500]
    passphrase = response.context["passphrase"]
    assert passphrase in response.content.decode()
    return response.context["export"], passphrase


def test_original_archive_opens_in_7zip_and_matches_the_originals(patient_client, patient, tmp_path, exports_dir):
    first = make_study(patient, tmp_path / "a", slices=3)
    second = make_study(patient, tmp_path / "b", slices=2, patient_id=None)
    export, passphrase = request_export(patient_client)
    assert re.fullmatch(r"[a-z]+(-[a-z]+){5}", passphrase)
    assert export.status == "queued"

    assert services.export_package(export_id=export.pk) == "ready"
    export.refresh_from_db()
    archive = services.archive_path(export)
    assert archive.exists() and export.passphrase_encrypted == ""
    assert export.size == archive.stat().st_size and export.file_count == 5
    assert not list(exports_dir.glob(".tmp-*"))

    # AES-256 on every entry, never ZipCrypto; the wrong passphrase opens nothing.
    assert encryption_methods(archive, passphrase) == {"AES-256 Store"}
    assert open_with_7z(archive, "wrong-passphrase", tmp_path / "wrong").returncode != 0
    result = open_with_7z(archive, passphrase, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = verify_archive(tmp_path / "out", [first, second], deidentified=False)
    assert manifest["created_for"]["name"] == patient.patient.name
    assert {s["study_uid"] for s in manifest["studies"]} == {first.study_uid, second.study_uid}
    readme = (tmp_path / "out" / "README.txt").read_text()
    assert "7-Zip" in readme and "openssl pkeyutl -verify" in readme and "ORIGINAL" in readme

    # The patient is told without detail; the log holds exactly one export event.
    assert len(mail.outbox) == 0  # on_commit does not run inside this test's transaction
    assert AccessEvent.objects.filter(patient=patient.patient, action="export").count() == 1


def test_deidentified_archive_carries_no_identity_and_consistent_new_uids(patient_client, patient, tmp_path, exports_dir):
    study = make_study(patient, tmp_path / "a", slices=3, burned_in=True)
    export, passphrase = request_export(patient_client, kind="deidentified", studies=[study])
    assert services.export_package(export_id=export.pk) == "ready"
    export.refresh_from_db()
    out = tmp_path / "out"
    assert open_with_7z(services.archive_path(export), passphrase, out).returncode == 0
    manifest = verify_archive(out, [study], deidentified=True)
    assert "name" not in manifest["created_for"]

    record = patient.patient
    forbidden = [FAMILY, GIVEN, record.mrn, study.accession, ADDRESS, "Larkspur", INSTITUTION_ADDRESS, *REFERRING.split("^")[:2],
                 *PERFORMING.split("^"), BIRTH.strftime("%Y%m%d"), record.name]
    original_uids = {study.study_uid} | set(study.series.values_list("series_uid", flat=True)) | set(
        Instance.objects.filter(series__study=study).values_list("sop_uid", flat=True))
    files = [out / f["path"] for f in manifest["files"] if f["path"] != "README.txt"]
    study_uids = set()
    for path in files:
        texts = header_texts(path)
        joined = "\n".join(texts)
        for value in forbidden:
            assert value.lower() not in joined.lower(), f"{value!r} remains in {path.name}"
        assert not original_uids & set(texts), f"an original UID remains in {path.name}"
        if path.name != "DICOMDIR":
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.PatientBirthDate == ""
            study_uids.add(ds.StudyInstanceUID)
    assert len(study_uids) == 1  # replaced consistently across the study's files
    assert (manifest_text := (out / "MANIFEST.json").read_text()) and FAMILY not in manifest_text
    readme = (out / "README.txt").read_text()
    # The scanner flags all three as "burned-in"; OCR finds no text in these phantoms.
    assert "The scanner marked these images as having text in the picture" in readme
    assert all(f["path"] in readme for f in manifest["files"] if f["path"].startswith("DICOM/"))
    assert export.burned_in_count == 3
    assert export.pixel_report == {"masked": [], "not_checked": [], "flagged": [
        f["path"] for f in manifest["files"] if f["path"].startswith("DICOM/")]}
    assert "Retain Longitudinal" not in readme or "113107" in readme or "shifted" in readme.lower()


def test_a_tampered_original_fails_the_export_without_an_archive(patient_client, patient, tmp_path, exports_dir, settings):
    study = make_study(patient, tmp_path / "a", slices=2)
    instance = Instance.objects.filter(series__study=study).first()
    stored = services.Path(settings.STORAGES["dicom"]["OPTIONS"]["location"]) / instance.storage_path
    original = stored.read_bytes()
    export, _ = request_export(patient_client)
    try:
        stored.chmod(0o640)
        stored.write_bytes(original[:-4] + b"\0\0\0\0")
        assert services.export_package(export_id=export.pk) == "failed"
    finally:
        stored.write_bytes(original)
    export.refresh_from_db()
    assert export.passphrase_encrypted == "" and "fingerprint" in export.error
    assert not any(exports_dir.iterdir())


def test_packaging_is_idempotent(patient_client, patient, tmp_path, exports_dir):
    make_study(patient, tmp_path / "a", slices=1)
    export, _ = request_export(patient_client)
    assert services.export_package(export_id=export.pk) == "ready"
    first = services.archive_path(export).stat()
    assert services.export_package(export_id=export.pk) == "ready"  # a redelivery changes nothing
    assert services.archive_path(export).stat().st_mtime_ns == first.st_mtime_ns
    assert len(list(exports_dir.iterdir())) == 1


def test_ready_sends_an_email_that_says_only_that_an_export_is_ready(patient_client, patient, tmp_path, exports_dir,
                                                                      django_capture_on_commit_callbacks):
    make_study(patient, tmp_path / "a", slices=1)
    export, passphrase = request_export(patient_client)
    with django_capture_on_commit_callbacks(execute=True):
        services.export_package(export_id=export.pk)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [patient.email]
    assert "ready" in message.subject.lower()
    body = message.body
    for secret in (passphrase, patient.patient.name, "CT", "CHEST", patient.patient.mrn):
        assert secret not in body


def test_cancel_stops_packaging_and_leaves_nothing(patient_client, patient, tmp_path, exports_dir):
    make_study(patient, tmp_path / "a", slices=2)
    export, _ = request_export(patient_client)
    response = patient_client.post(f"/exports/{export.pk}/cancel/")
    assert response.status_code == 302
    assert services.export_package(export_id=export.pk) == "cancelled"
    export.refresh_from_db()
    assert export.status == "cancelled" and export.passphrase_encrypted == ""
    assert not any(exports_dir.iterdir()) if exports_dir.exists() else True


def test_purge_deletes_expired_archives(patient_client, patient, tmp_path, exports_dir):
    make_study(patient, tmp_path / "a", slices=1)
    export, _ = request_export(patient_client)
    services.export_package(export_id=export.pk)
    assert services.exports_purge_expired() == 0
    ExportRequest.objects.filter(pk=export.pk).update(expires_at=services.timezone.now())
    assert services.exports_purge_expired() == 1
    export.refresh_from_db()
    assert export.status == "expired" and not services.archive_path(export).exists()


def test_passphrase_is_stored_only_encrypted(patient_client, patient, tmp_path, exports_dir):
    make_study(patient, tmp_path / "a", slices=1)
    export, passphrase = request_export(patient_client)
    export.refresh_from_db()
    assert passphrase not in export.passphrase_encrypted
    assert services.decrypt(export.passphrase_encrypted).decode() == passphrase


def test_large_originals_are_handed_over_in_pieces_and_open_in_7zip(patient_client, patient, tmp_path, exports_dir):
    """A 2 MiB and a 4.5 MiB slice are each more than a big file's buffers, so their helper
    thread hands them over piece by piece and waits for the writer mid-file. 7-Zip must open
    both."""
    from exports import packaging

    sealed = make_study(patient, tmp_path / "sealed", slices=1, size=1024)
    streamed = make_study(patient, tmp_path / "streamed", slices=1, size=1536)
    sizes = {study.pk: Instance.objects.get(series__study=study).size for study in (sealed, streamed)}
    assert packaging.FILE_PIECES * packaging.BIG_PIECE < sizes[sealed.pk] < sizes[streamed.pk]
    export, passphrase = request_export(patient_client)

    assert services.export_package(export_id=export.pk) == "ready"
    extracted = tmp_path / "out"
    result = open_with_7z(services.archive_path(export), passphrase, extracted)
    assert result.returncode == 0, result.stdout + result.stderr
    verify_archive(extracted, [sealed, streamed], deidentified=False)

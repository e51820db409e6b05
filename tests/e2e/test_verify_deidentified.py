"""A patient checks a file from their own de-identified copy in Chromium and is told so.

The copy is made by the real packaging (OCR, de-identification, AES-256 ZIP) and opened with 7-Zip,
as the patient would; the file is then uploaded on "Verify a copy"."""

from __future__ import annotations

import pydicom
import pytest
from playwright.sync_api import Page, expect

from core.actor import Actor, Kind
from exports.services import export_for_paper_request
from tests.e2e.test_viewer import sign_in
from tests.exports.conftest import make_study, open_with_7z

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_file_from_my_deidentified_copy_is_recognised(page: Page, live_server, site, patient, tmp_path, screenshot):
    study = make_study(patient, tmp_path / "ct", slices=2)
    archive = tmp_path / "copy.zip"
    office = Actor(kind=Kind.PRIVACY_OFFICER, name="Privacy office", role="Privacy officer").investigating(patient.patient.pk)
    export_for_paper_request(actor=office, patient=patient.patient, studies=[study], deidentify=True,
                             passphrase="correct-horse", out=archive)
    assert open_with_7z(archive, "correct-horse", tmp_path / "opened").returncode == 0
    copy = tmp_path / "opened" / "DICOM" / "ST0001" / "SE0001" / "IM000001"
    ds = pydicom.dcmread(copy, stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == ""

    sign_in(page, live_server.url, patient)
    page.get_by_role("link", name="Verify a copy").click()
    page.get_by_label("DICOM files").set_input_files(str(copy))
    page.get_by_role("button", name="Check files").click()
    expect(page.locator(".result .verdict")).to_have_text("From your de-identified copy.")
    expect(page.locator(".result")).to_contain_text("This is from your de-identified copy of “CT CHEST” made on")
    expect(page.locator(".result")).to_contain_text("Its pixels match the original.")
    screenshot(page, "verify-deidentified")

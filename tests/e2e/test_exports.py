"""A patient asks for an encrypted export in Chromium, watches it progress, downloads it and
opens it with 7-Zip and the passphrase shown once. A real Celery worker packages it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from exports.models import ExportRequest
from exports.services import archive_path
from imaging.models import Study
from tests.e2e.conftest import DESKTOP, MOBILE
from tests.e2e.test_viewer import sign_in
from tests.exports.conftest import make_study, open_with_7z, verify_archive
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_request_progress_download(page: Page, live_server, site, patient, tmp_path, celery_worker_process, screenshot):
    study = make_study(patient, tmp_path / "ct", slices=3)
    sign_in(page, live_server.url, patient)

    page.get_by_role("link", name="Downloads").click()
    expect(page.get_by_text("You have not asked for any exports yet.")).to_be_visible()
    page.get_by_role("link", name="Ask for a new export").click()
    page.get_by_label("All my studies").check()
    page.get_by_label(re.compile("^Original")).check()
    screenshot(page, "export-new")
    page.get_by_role("button", name="Prepare my export").click()

    # A fresh password first; allauth then resumes the request.
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Write down your passphrase")
    passphrase = page.locator("#export-passphrase").inner_text().strip()
    assert re.fullmatch(r"[a-z]+(-[a-z]+){5}", passphrase)
    expect(page.get_by_role("button", name="Copy passphrase")).to_be_visible()
    page.get_by_role("link", name=re.compile("show progress")).click()

    # The page polls the status endpoint and shows the download button once ready.
    download_button = page.get_by_role("button", name="Download the encrypted file")
    expect(download_button).to_be_visible(timeout=60_000)
    expect(page.locator("#export-label")).to_have_text("Ready to download")
    screenshot(page, "export-ready")
    with page.expect_download() as info:
        download_button.click()
    target = tmp_path / "download.zip"
    info.value.save_as(target)
    assert info.value.suggested_filename.startswith("lightbox-export-")

    out = tmp_path / "out"
    assert open_with_7z(target, passphrase, out).returncode == 0
    verify_archive(out, [study], deidentified=False)
    archive_path(ExportRequest.objects.get()).unlink()  # the worker's export dir is shared with other runs


def test_the_export_page_lays_out_its_facts_and_lists_its_studies(page: Page, live_server, site, patient):
    """Issue 19 item 12: the facts box was the browser's bare <dl> (each value indented under
    its label, one per line) and the page did not say which studies were in the export."""
    now = timezone.now()
    studies = [
        Study.objects.create(patient=patient.patient, study_uid=f"1.2.826.0.1.3680043.10.65.{i}", description=description,
                             study_date=dt.date(2025, 3, 1 + i), modalities=modality)
        for i, (description, modality) in enumerate([("CT CHEST WITH CONTRAST", "CT"), ("MRI BRAIN", "MR")])
    ]
    export = ExportRequest.objects.create(
        patient=patient.patient, requested_by=patient, status="ready", progress=100, size=48_000_000, file_count=312,
        sha256="ab" * 32, finished_at=now, expires_at=now + dt.timedelta(days=7),
    )
    export.studies.set(studies)
    sign_in(page, live_server.url, patient)
    for viewport in (DESKTOP, MOBILE):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server.url}/exports/{export.pk}/")
        facts = page.locator(".export-facts")
        labels, values = facts.locator("dt"), facts.locator("dd")
        # Each value sits under its label, not indented like a bare <dl>.
        assert values.first.evaluate("e => getComputedStyle(e).marginLeft") == "0px"
        assert abs(values.first.bounding_box()["x"] - labels.first.bounding_box()["x"]) < 1
        card = page.locator("section[aria-labelledby=about-heading]").bounding_box()
        hash_box = page.locator(".export-hash").bounding_box()
        assert hash_box["x"] + hash_box["width"] <= card["x"] + card["width"]
        if viewport is DESKTOP:  # facts side by side on a wide screen
            first, second = labels.nth(0).bounding_box(), labels.nth(1).bounding_box()
            assert first["y"] == second["y"] and second["x"] > first["x"]
        rows = page.locator(".export-studies li")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("MRI brain")
        expect(rows.nth(0)).to_contain_text("2 Mar 2025")
        expect(rows.nth(1)).to_contain_text("CT chest with contrast")
        expect(rows.nth(1).locator("abbr")).to_have_text("CT")

"""A patient asks for an encrypted export in Chromium, watches it progress, downloads it and
opens it with 7-Zip and the passphrase shown once. A real Celery worker packages it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from exports.models import ExportRequest
from exports.services import archive_path
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

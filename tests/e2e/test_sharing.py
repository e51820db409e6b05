"""A patient sends a study to another hospital in Chromium: picks it and the hospital, confirms
with the password, and watches the sharing page's progress bar until it says "Sent"; the other
hospital's archive (a second, real Orthanc) holds the files byte for byte, and the access log
shows the share. A real Celery worker sends it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from imaging.models import Instance
from imaging.storage import open_stored
from sharing.models import Partner, Push
from tests.e2e.test_viewer import sign_in
from tests.exports.conftest import make_study
from tests.factories import PASSWORD
from tests.sharing.conftest import partner_archive, partner_orthanc  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_send_a_study_to_another_hospital_and_see_it_in_the_log(
        page: Page, live_server, site, patient, tmp_path, partner_archive, celery_worker_process, screenshot):  # noqa: F811
    study = make_study(patient, tmp_path / "ct", slices=3)
    Partner.objects.create(name="Northbrook Royal Infirmary", stow_url=partner_archive.dicomweb_url)
    sign_in(page, live_server.url, patient)

    page.goto(f"{live_server.url}/sharing/")
    expect(page.get_by_text("You have not sent any scans to another hospital.")).to_be_visible()
    page.get_by_role("link", name="Send scans to another hospital").click()
    page.get_by_label(re.compile("CT CHEST", re.I)).check()
    page.get_by_label("Northbrook Royal Infirmary").check()
    screenshot(page, "sharing-send")
    page.get_by_role("button", name="Send the scans").click()

    # A fresh password first; allauth then resumes the request, which lands on the sharing page.
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Sharing your scans")
    row = page.locator("tr.push-row")
    expect(row).to_contain_text("Northbrook Royal Infirmary")
    # The page polls the push's status and shows "Sent" once the partner has every image.
    expect(row.locator(".push-label")).to_have_text("Sent", timeout=60_000)
    expect(row.locator(".push-count")).to_have_text("3 of 3 images")
    screenshot(page, "sharing")

    assert Push.objects.get().status == "sent"
    for instance in Instance.objects.filter(series__study=study):
        with open_stored(instance.storage_path) as fh:
            assert partner_archive.file(partner_archive.find_instance(instance.sop_uid)) == fh.read()

    page.goto(f"{live_server.url}/access-log/")
    expect(page.locator("main")).to_contain_text("Northbrook Royal Infirmary")

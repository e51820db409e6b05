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


@pytest.mark.django_db(transaction=True)
def test_share_a_study_with_a_doctor_by_link_and_codes_then_revoke(page: Page, live_server, site, patient, tmp_path, browser,
                                                                    console, screenshot):
    """Issue 20's journey: the patient shares a study → the doctor opens it with both codes and
    scrolls the viewer → the patient sees that view in the access log and the notice → the
    patient revokes → the doctor is refused."""
    from django.core import mail

    from tests.e2e.journey import second_browser

    make_study(patient, tmp_path / "ct", slices=3)
    sign_in(page, live_server.url, patient)
    page.goto(f"{live_server.url}/sharing/")
    page.get_by_role("link", name="Share with a doctor").click()
    page.get_by_label(re.compile("CT CHEST", re.I)).check()
    page.get_by_label("Doctor's name").fill("Dr Ada Lowe")
    page.get_by_label("Hospital or practice").fill("Northbrook Clinic")
    page.get_by_label("Doctor's email").fill("ada@northbrook.example")
    page.get_by_role("button", name="Make the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Your share link")
    link = page.locator("#share-url").inner_text()
    code = page.locator("#share-code").inner_text()
    expect(page.locator(".share-qr svg")).to_be_visible()
    screenshot(page, "share-created")

    with second_browser(browser, console) as doctor:
        doctor.goto(link)
        expect(doctor.get_by_role("heading", level=1)).to_have_text("Shared scans")
        doctor.get_by_label("Access code").fill(code)
        doctor.get_by_role("button", name="Continue").click()
        expect(doctor.get_by_role("heading", level=1)).to_have_text("Code from the email")
        otp = re.search(r"\b(\d{6})\b", next(m for m in reversed(mail.outbox) if m.to == ["ada@northbrook.example"]).body).group(1)
        doctor.get_by_label("Code from the email").fill(otp)
        doctor.get_by_role("button", name="Open the scans").click()
        expect(doctor.locator(".share-banner")).to_contain_text(patient.patient.name)
        expect(doctor.locator(".share-banner")).to_contain_text("Shared with Dr Ada Lowe until")
        doctor.get_by_role("link", name=re.compile("Series")).first.click()
        readout = doctor.locator("#viewer-readout")
        expect(readout).to_contain_text("Image 1 of 3")
        doctor.locator("#viewer-stage").focus()
        doctor.keyboard.press("ArrowDown")
        expect(readout).to_contain_text("Image 2 of 3")
        expect(doctor.locator("#viewer-download")).to_have_count(0)  # read-only
        screenshot(doctor, "share-recipient-viewer")

        # The patient sees the look, under the doctor's name, and the notice.
        page.goto(f"{live_server.url}/access-log/")
        expect(page.locator("main")).to_contain_text("Dr Ada Lowe")
        expect(page.locator("main")).to_contain_text("Northbrook Clinic")
        page.goto(f"{live_server.url}/notices/")
        expect(page.locator("main")).to_contain_text("Dr Ada Lowe at Northbrook Clinic opened the scans you shared")
        page.goto(f"{live_server.url}/sharing/")
        row = page.locator("tr.share-row")
        expect(row).to_contain_text("1 view,")
        screenshot(page, "sharing-links")
        row.get_by_role("button", name=re.compile("Revoke")).click()
        expect(page.locator("tr.share-row .share-status")).to_have_text("Revoked")

        # The doctor's next step is refused; the code again gets the one answer for everything.
        doctor.reload()
        expect(doctor.get_by_role("heading", level=1)).to_have_text("Shared scans")
        expect(doctor.get_by_label("Access code")).to_be_visible()
        doctor.get_by_label("Access code").fill(code)
        doctor.get_by_role("button", name="Continue").click()
        expect(doctor.get_by_role("alert")).to_contain_text("This link cannot be opened")

"""A patient's whole path through Lightbox in one continuous Chromium session, as they would
walk it: activation code -> second factor -> their scan -> what it reveals -> viewer -> verify a
copy -> access log (filter, CSV) -> consent change and signed receipt -> encrypted export
packaged by a real Celery worker and opened with 7-Zip -> flag an access -> the office's
question and the patient's reply.

The feature tests prove each step in depth; this one proves the steps join up: every page is
reached by a link or button from the one before (only the first page and the emailed link are
typed in), and what one step leaves behind (access events, consent, the export) shows in the
next. The page fixture fails the test on any CSP violation or JavaScript error.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.services import activation_code_issue
from consent import receipts
from consent.services import consent_policy_publish
from exports.models import ExportRequest
from exports.services import archive_path
from flags import services as flag_services
from flags.models import Flag
from imaging.models import Instance
from tests.audit.conftest import clinician_view
from tests.conftest import WorkerProcess
from tests.e2e.journey import (
    confirm_password,
    download,
    heading,
    journey_expect_timeout,  # noqa: F401 - autouse
    sign_up,
    table_locked,
)
from tests.e2e.test_signup_journey import expect_home
from tests.exports.conftest import ADDRESS, make_study, open_with_7z, verify_archive
from tests.factories import PatientFactory, actor_of
from tests.imaging.test_verify_copy import edited

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

NAME = "Grace Hopper"
EMAIL = "grace.hopper@example.org"
PASSWORD = "amber lantern cobol 1906"
BIRTH_DATE = dt.date(1976, 12, 9)
AI_VENDOR = "Northlight AI"


def test_patient_walks_the_whole_portal(page: Page, live_server, site, officer, settings, tmp_path: Path):
    base = live_server.url
    # The hospital's default is "yes" to secondary uses, so opting out is a real change.
    settings.CONSENT_DEFAULT = "granted"
    consent_policy_publish(version=1, text="The policy.", effective_from=timezone.now() - dt.timedelta(days=1))
    # Before the patient ever signs in: a CT in the hospital's archive, a radiologist's read and
    # an AI vendor's analysis in their access log, and the activation letter.
    record = PatientFactory(name=NAME, birth_date=BIRTH_DATE)
    # (make_study hands the study to ``user.patient``; this patient has no account yet.)
    study = make_study(SimpleNamespace(patient=record), tmp_path / "ct", slices=3)
    original = sorted((tmp_path / "ct").iterdir())[0]
    clinician_view(record, study=study, occurred_at=timezone.now() - dt.timedelta(days=20))
    ai_use = clinician_view(
        record, study=study, actor_type="ai_vendor", actor_name="Chest triage model", role="", organization=AI_VENDOR,
        purpose="ai_inference", occurred_at=timezone.now() - dt.timedelta(days=3),
    )
    code = activation_code_issue(patient=record)

    # 1. Activation, email confirmation, authenticator, recovery codes.
    sign_up(page, base, activation_code=code, birth_date=BIRTH_DATE, email=EMAIL, password=PASSWORD)
    expect_home(page, NAME)

    # 2. The studies list, one study, what its headers reveal.
    expect(page.get_by_text("1 study held by the hospital, newest first.")).to_be_visible()
    expect(page.locator(".study-card")).to_contain_text("3 images")
    page.get_by_role("link", name="CT CHEST").click()
    expect(heading(page)).to_contain_text("CT chest")  # plain words; "CT CHEST" as recorded is its title
    reveal = page.locator("section.reveal")
    expect(reveal.get_by_role("heading", name="What this scan reveals")).to_be_visible()
    expect(reveal.get_by_text(ADDRESS)).to_be_visible()

    # 3. The viewer: next slice by keyboard, then a window preset.
    page.get_by_role("link", name=re.compile("Open in viewer")).first.click()
    readout = page.locator("#viewer-readout")
    expect(page.get_by_role("toolbar", name="Viewer tools")).to_be_visible()  # viewer.js is running
    expect(readout).to_contain_text("Image 1 of 3, position")
    page.locator("#viewer-stage").focus()
    page.keyboard.press("ArrowDown")
    expect(readout).to_contain_text("Image 2 of 3")
    expect(page.locator("#viewer-image")).to_have_attribute("data-slice", "2")
    page.get_by_label("Window").select_option("lung")
    expect(page.locator("#viewer-window")).to_have_text("Level -600, width 1500")

    # 4. Verify a copy: the original file, then a copy whose header was changed.
    page.locator(".back-link").get_by_role("link", name="CT CHEST").click()
    page.get_by_role("link", name="Verify a copy").click()
    expect(heading(page)).to_have_text("Verify a copy")
    page.get_by_label("DICOM files").set_input_files(original)
    page.get_by_role("button", name="Check files").click()
    expect(page.locator(".result .verdict")).to_have_text("Identical to the original.")
    changed = edited(original, lambda ds: setattr(ds, "InstitutionName", "Elsewhere Clinic"))
    page.get_by_label("DICOM files").set_input_files({"name": "IM000001", "mimeType": "application/dicom", "buffer": changed})
    page.get_by_role("button", name="Check files").click()
    expect(page.locator(".result .verdict")).to_have_text("Different from the original.")
    expect(page.locator(".result")).to_contain_text("Elsewhere Clinic")

    # 5. The access log: her own looks are there; the filtered list downloads as CSV.
    page.get_by_role("link", name="Who saw my scans").click()
    expect(heading(page)).to_have_text("Who saw my scans")
    page.get_by_text("Filter the list").click()
    page.get_by_label("Who", exact=True).select_option("Patient")
    page.get_by_role("button", name="Show accesses").click()
    expect(page).to_have_url(re.compile(r"[?&]actor_type=patient(&|$)"))
    rows = page.locator(".access-row")
    sentences = rows.locator(".access-sentence")
    expect(sentences.filter(has_text="You viewed your CT chest.")).to_have_count(3)  # the study page twice, the viewer once
    for sentence in sentences.all_inner_texts():
        assert sentence.startswith("You "), sentence
    shown = {int(pk) for pk in rows.evaluate_all("rows => rows.map(r => r.dataset.event)")}
    link = page.get_by_role("link", name="Download this filtered list (CSV)")
    link.click()
    confirm_password(page, PASSWORD)
    # Back on the same filtered log (not left on the password page while a file arrives), told
    # the password is confirmed; one more click downloads the list, once.
    expect(page.get_by_text("Your password is confirmed. Download the list now:")).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]actor_type=patient(&|$)"))
    csv_file = download(page, tmp_path, link.click)
    assert re.fullmatch(r"access-log-\d{4}-\d{2}-\d{2}\.csv", csv_file.name)
    table = list(csv.DictReader(csv_file.open(encoding="utf-8-sig")))
    assert {r["actor_type"] for r in table} == {"Patient"}
    assert shown <= {int(r["event_id"]) for r in table}
    assert sum(r["action"] == "Viewed" and r["study"] == "CT CHEST" for r in table) == 3
    assert [r["action"] for r in table].count("Downloaded") == 1  # the download itself is logged

    # 6. Consent: she opts out of AI training (the password she just typed still counts) and
    # keeps the signed receipt.
    page.get_by_role("link", name="My choices", exact=True).click()
    card = page.locator("#scope-ai_training")
    expect(card.get_by_text("Yes, allowed")).to_be_visible()
    card.get_by_role("link", name="Say no to AI training").click()
    expect(heading(page)).to_have_text("Your choice: AI training")
    expect(page.get_by_label("No, my scans may not be used for this")).to_be_checked()
    page.get_by_role("button", name="Confirm my choice").click()
    expect(heading(page)).to_have_text("Consent receipt")
    expect(page.get_by_role("status")).to_contain_text("Your choice is saved")
    receipt_file = download(page, tmp_path, page.get_by_role("link", name="Download signed receipt (JSON)").click)
    body = receipts.verify(json.loads(receipt_file.read_text()))
    assert body["decision"] == "refused" and body["purposes"][0]["purpose"] == "ai_training"
    page.get_by_role("link", name="My choices", exact=True).click()
    expect(page.locator("#scope-ai_training").get_by_text("No, not allowed")).to_be_visible()

    # 7. An encrypted export. A real worker packages it; it starts only once she watches the
    # job wait, and it waits on a table lock while packaging, so each state shows for certain.
    page.get_by_role("link", name="Downloads").click()
    page.get_by_role("link", name="Ask for a new export").click()
    page.get_by_label("All my studies").check()
    page.get_by_label(re.compile("^Original")).check()
    page.get_by_role("button", name="Prepare my export").click()
    expect(heading(page)).to_have_text("Write down your passphrase")
    passphrase = page.locator("#export-passphrase").inner_text().strip()
    assert re.fullmatch(r"[a-z]+(-[a-z]+){5}", passphrase)
    page.get_by_role("link", name=re.compile("show progress")).click()
    label, bar = page.locator("#export-label"), page.get_by_role("progressbar")
    expect(label).to_have_text("Waiting to start · 0%")
    expect(bar).to_have_attribute("value", "0")
    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        with table_locked(Instance._meta.db_table):  # the worker claims the job, then waits to read its files
            worker.wait_ready()
            expect(label).to_contain_text("Being prepared", timeout=30_000)
            expect(bar).to_be_visible()
        expect(label).to_have_text("Ready to download", timeout=30_000)
    finally:
        worker.stop(signal.SIGQUIT)  # its one job is done: a cold shutdown is quicker
    expect(bar).to_have_count(0)
    archive = download(page, tmp_path, page.get_by_role("button", name="Download the encrypted file").click)
    assert archive.name.startswith("lightbox-export-")
    assert open_with_7z(archive, passphrase, tmp_path / "opened").returncode == 0
    manifest = verify_archive(tmp_path / "opened", [study], deidentified=False)
    assert len([f for f in manifest["files"] if f["path"].startswith("DICOM/")]) == 3
    archive_path(ExportRequest.objects.get()).unlink()  # the worker's export folder outlives this test

    # 8. She does not recognise the AI vendor's use and flags it from the access log.
    page.get_by_role("link", name="Who saw my scans").click()
    page.get_by_text("Filter the list").click()
    page.get_by_label("Organisation").select_option(AI_VENDOR)
    page.get_by_role("button", name="Show accesses").click()
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name=re.compile("Flag this access")).click()
    expect(heading(page)).to_have_text("Flag an access to your scans")
    expect(page.locator(".facts")).to_contain_text(AI_VENDOR)
    page.get_by_label("I did not agree to this AI or research use").check()
    page.get_by_label("Tell us more").fill("I never agreed to an AI company using my CT.")
    page.get_by_role("button", name="Send report").click()
    expect(page.get_by_role("status")).to_have_text("Thank you. Your report has been sent to the privacy office.")
    flag = Flag.objects.get(patient=record)
    assert flag.access_event == ai_use
    expect(heading(page)).to_contain_text(f"Report #{flag.pk}")
    expect(heading(page)).to_contain_text("Received")

    # 9. Later the office asks a question (its own journey is test_officer_journey.py); she
    # reads it under "My reports" and answers.
    flag_services.flag_claim(actor=actor_of(officer), flag=flag)
    flag_services.flag_message(
        actor=actor_of(officer), flag=flag, ask_for_info=True, text="Did you take part in a study at another hospital?"
    )
    assert mail.outbox[-1].to == [EMAIL] and AI_VENDOR not in mail.outbox[-1].body
    page.get_by_role("link", name="My reports", exact=True).click()
    expect(page.get_by_role("heading", name="Messages")).to_contain_text("3 new")
    expect(page.locator(".notice-unread").first).to_contain_text("needs more information from you")
    page.get_by_role("link", name=re.compile(r"^Open the report")).first.click()
    expect(heading(page)).to_contain_text("Waiting for your reply")
    expect(page.locator(".timeline-message_to_patient")).to_contain_text("a study at another hospital?")
    page.get_by_label("Your reply").fill("No, never. I have only been a patient at St. Example Hospital.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_have_text("Your reply has been sent to the privacy office.")
    expect(heading(page)).to_contain_text("Being reviewed")
    expect(page.locator(".timeline-message_from_patient")).to_contain_text("only been a patient")
    flag.refresh_from_db()
    assert flag.status == Flag.Status.IN_REVIEW

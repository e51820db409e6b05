"""A privacy officer's whole path through one patient report, in Chromium: the queue -> claim
-> the context (the flagged access, the accessor's other accesses, consent at the time, the
study) -> a message to the patient -> resolve with an outcome -> confirm an incident, which
notifies exactly the patients the vendor accessed in the window, by email and in the portal.

The feature tests prove each step in depth; this one proves the officer can walk them in order
with buttons and links alone, and that the patients see the result. The page fixture fails the
test on any CSP violation or JavaScript error (the patient's browser is watched too).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Browser, Dialog, Page, expect

from flags import services as flag_services
from flags.models import Flag, Incident
from tests.e2e.conftest import ConsoleWatch
from tests.e2e.journey import (
    heading,
    journey_expect_timeout,  # noqa: F401 - autouse
    second_browser,
)
from tests.e2e.test_flags import sign_in
from tests.factories import PatientFactory, actor_of
from tests.flags.conftest import make_event, make_study

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

VENDOR = "Acme AI Ltd"
SUBJECT = "A data-sharing error affecting your scans"
NOTICE = "An AI company received copies of scans without the patients' permission. The copies have been deleted."


def test_officer_works_a_report_through_to_an_incident_notice(
    page: Page, browser: Browser, console: ConsoleWatch, live_server, site, patient, other_patient, officer
):
    base = live_server.url
    # The vendor used this patient's CT three days ago (and once before, a month ago), and
    # another patient's scans the same day; a third patient's scans went to a different vendor.
    study = make_study(patient.patient, description="CT chest")
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    make_event(patient.patient, study=study, when=three_days_ago - dt.timedelta(days=30))
    flagged = make_event(patient.patient, study=study, when=three_days_ago)
    make_event(other_patient.patient, when=three_days_ago + dt.timedelta(hours=2))
    make_event(PatientFactory(), organization="Other Vendor plc", when=three_days_ago)
    flag = flag_services.flag_create(
        actor=actor_of(patient), access_event_id=flagged.pk,
        category=Flag.Category.UNEXPECTED_AI_OR_RESEARCH_USE, description="I never agreed to this.",
    )
    mail.outbox.clear()

    # 1. The queue: one new report, nobody holds it; she claims it.
    sign_in(page, base, officer)
    page.get_by_role("link", name="Flag queue").click()
    expect(heading(page)).to_have_text("Flags queue")
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("I did not agree to this AI or research use")
    expect(row).to_contain_text("Patient: an access")
    expect(row).to_contain_text("Nobody")
    row.get_by_role("button", name=f"Claim #{flag.pk}").click()

    # 2. The context: the flagged access, the vendor's other access, consent then, the study.
    expect(page.get_by_role("status")).to_have_text(f"You now hold flag #{flag.pk}.")
    expect(heading(page)).to_contain_text(f"Flag #{flag.pk}")
    expect(heading(page)).to_contain_text("Being reviewed")
    expect(page.locator("blockquote").first).to_have_text("I never agreed to this.")
    access = page.locator("section[aria-labelledby=event-heading]")
    expect(access).to_contain_text(VENDOR)
    expect(access).to_contain_text("AI training")
    expect(access.locator("tbody tr")).to_have_count(1)  # the vendor's access a month earlier
    expect(page.locator("section[aria-labelledby=consent-heading] tbody tr")).to_have_count(4)
    expect(page.locator("section[aria-labelledby=study-heading]")).to_contain_text("CT chest")

    # 3. A message to the patient, then the outcome.
    page.get_by_label("Message to the patient").fill("We are checking with the vendor and will write again.")
    page.get_by_role("button", name="Send message").click()
    expect(page.get_by_role("status")).to_have_text("Message sent to the patient.")
    expect(page.locator(".timeline-message_to_patient")).to_contain_text("checking with the vendor")
    page.get_by_label("New status").select_option("resolved")
    page.get_by_label("Outcome for the patient").fill("The vendor had no permission. Your scans were removed from its systems.")
    page.get_by_role("button", name="Save status").click()
    expect(page.get_by_role("status")).to_have_text("Status changed.")
    expect(heading(page)).to_contain_text("Resolved")
    expect(page.get_by_role("button", name="Send message")).to_have_count(0)  # closed: nothing more to say

    # 4. The incident: the form starts from the flagged access (vendor, a day either side).
    incident_form = page.locator("#incident-form")
    expect(incident_form.get_by_label("Accessor organisation")).to_have_value(VENDOR)
    incident_form.get_by_label("Subject").fill(SUBJECT)
    incident_form.get_by_label("Message to the affected patients").fill(NOTICE)
    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.wait_for_load_state()  # flags.js, which asks the question, is wired up on DOMContentLoaded
    incident_form.get_by_role("button", name="Confirm and notify").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"Incident #\d+ confirmed; 2 patients notified\."))
    incident = Incident.objects.get()
    expect(page.get_by_role("status")).to_contain_text(f"Incident #{incident.pk} ")
    assert questions == ["Notify every patient these criteria select? This cannot be undone."]
    expect(page.locator(".timeline-incident")).to_contain_text("2 patients notified.")

    # 5. Exactly the two patients get the notice by email...
    notices = {m.to[0]: m for m in mail.outbox if m.subject == f"[Lightbox] {SUBJECT}"}
    assert set(notices) == {patient.email, other_patient.email}
    assert NOTICE in notices[patient.email].body

    # ...and in the portal, next to the resolved report.
    with second_browser(browser, console) as own:
        sign_in(own, base, patient)
        own.get_by_role("link", name="My reports", exact=True).click()
        notice = own.locator(".notice-item").filter(has_text=SUBJECT)
        expect(notice).to_contain_text(NOTICE)
        report = own.get_by_role("link", name=re.compile(f"#{flag.pk}")).first
        report.click()
        expect(heading(own)).to_contain_text("Resolved")
        expect(own.locator(".outcome")).to_contain_text("Your scans were removed from its systems.")
        expect(own.locator(".timeline-message_to_patient")).to_contain_text("checking with the vendor")

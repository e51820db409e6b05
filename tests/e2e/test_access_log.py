"""A patient reads who accessed their scans and narrows the list to one organisation.

Runs in Chromium under the real CSP (the page fixture fails on any violation or JS error).
With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/access-log-*.png.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from audit.demo import build_demo_access_log
from audit.models import AccessEvent
from tests.audit.conftest import make_study
from tests.e2e.test_viewer import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_patient_filters_the_access_log_by_organisation(page: Page, live_server, site, patient, screenshot):
    record = patient.patient
    for description, modality in (("CT chest", "CT"), ("Chest X-ray", "DX"), ("MR knee", "MR")):
        study = make_study(record)
        study.description = description
        study.modalities = modality
        study.study_date = (timezone.now() - dt.timedelta(days=300)).date()
        study.save()
    build_demo_access_log(record)
    sign_in(page, live_server.url, patient)

    page.get_by_role("link", name="Who saw my scans").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Who saw my scans")
    expect(page.get_by_role("heading", name="The last 12 months")).to_be_visible()
    expect(page.get_by_role("img", name="Accesses by others per month")).to_be_visible()
    rows = page.locator(".access-row")
    expect(rows).to_have_count(25)
    screenshot(page, "access-log")

    page.get_by_text("Filter the list").click()
    page.get_by_label("Organisation").select_option("Northlight AI (chest X-ray triage)")
    page.get_by_role("button", name="Show accesses").click()

    expect(page.get_by_label("Organisation")).to_have_value("Northlight AI (chest X-ray triage)")
    ai_reads = AccessEvent.objects.filter(patient=record, organization="Northlight AI (chest X-ray triage)").count()
    expect(rows).to_have_count(min(ai_reads, 25))
    for sentence in rows.locator(".access-sentence").all_text_contents():
        assert "Northlight AI" in sentence and "for analysis by an AI system" in sentence
    expect(rows.first.locator(".badge-ai")).to_be_visible()
    # Empty fields stay out of the address (audit.js), and the list heading has focus.
    assert "since=" not in page.url and "organization=Northlight" in page.url
    expect(page.locator("#log-heading")).to_be_focused()

    page.get_by_label("Why").select_option("emergency")
    page.get_by_role("button", name="Show accesses").click()
    expect(page.get_by_text("No accesses match these filters.")).to_be_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    expect(rows).to_have_count(25)
    page.get_by_role("link", name="Older accesses").click()
    expect(rows.first).to_be_visible()


def test_the_patients_own_actions_are_one_line_per_day_and_the_list_is_others(page: Page, live_server, site, patient, screenshot):
    """Issue 19, item 3: a patient who reads their scans many times does not flood the log."""
    record = patient.patient
    build_demo_access_log(record)
    sign_in(page, live_server.url, patient)
    page.goto(f"{live_server.url}/access-log/")
    headline = page.locator("#others-total").inner_text()
    # The patient opens the page again and again in one visit (the issue: 63 became 101).
    for _i in range(12):
        page.goto(f"{live_server.url}/access-log/")
    assert AccessEvent.objects.filter(patient=record, actor_type="patient").count() >= 13

    rows = page.locator(".access-row")
    expect(rows.first).to_be_visible()
    assert page.locator(".badge-self").count() == 0
    assert "You viewed" not in page.locator("#access-list").inner_text()
    expect(page.locator("#others-total")).to_have_text(headline)
    expect(page.locator("#own-total")).to_contain_text("of your own")
    expect(page.locator(".bar-patient")).to_have_count(0)

    # Keyboard: the tab for the patient's own actions is a link reached with Tab.
    tab = page.get_by_role("navigation", name="Whose actions").get_by_role("link", name="Your own actions")
    tab.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your own actions, one line per day")).to_be_visible()
    days = page.locator(".own-day")
    expect(days.first).to_be_visible()
    assert days.count() <= 31
    today = days.first.inner_text()
    assert "Viewed" in today and "times" in today
    expect(page.get_by_role("link", name="Your own actions", exact=True)).to_have_attribute("aria-current", "page")
    # One line per day: each day's row is a single line of text at desktop width.
    box = days.first.locator("p").bounding_box()
    line = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.own-day p')).lineHeight)")
    assert box["height"] < line * 1.6, (box, line)
    screenshot(page, "access-log-own")


def test_the_whose_actions_tabs_fit_a_phone(page: Page, live_server, site, patient):
    build_demo_access_log(patient.patient)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server.url, patient)
    page.goto(f"{live_server.url}/access-log/?show=own")
    tabs = page.locator(".log-tabs a")
    expect(tabs).to_have_count(3)
    for i in range(3):
        box = tabs.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert box["height"] >= 24  # a target a thumb can hit
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

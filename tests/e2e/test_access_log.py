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
from tests.audit.conftest import make_study
from tests.e2e.test_viewer import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_patient_filters_the_access_log_by_organisation(page: Page, live_server, site, patient, screenshot):
    record = patient.patient
    for description in ("CT chest", "Chest X-ray", "MR knee"):
        study = make_study(record)
        study.description = description
        study.study_date = (timezone.now() - dt.timedelta(days=300)).date()
        study.save()
    build_demo_access_log(record)
    sign_in(page, live_server.url, patient)

    page.get_by_role("link", name="Who saw my scans").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Who saw my scans")
    expect(page.get_by_role("heading", name="The last 12 months")).to_be_visible()
    expect(page.get_by_role("img", name="Accesses per month")).to_be_visible()
    rows = page.locator(".access-row")
    expect(rows).to_have_count(25)
    screenshot(page, "access-log")

    page.get_by_text("Filter the list").click()
    page.get_by_label("Organisation").select_option("Northlight AI (chest X-ray triage)")
    page.get_by_role("button", name="Show accesses").click()

    expect(page.get_by_label("Organisation")).to_have_value("Northlight AI (chest X-ray triage)")
    expect(rows).to_have_count(6)
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

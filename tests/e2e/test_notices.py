"""The notification centre in Chromium (issue 19, item 2): the bell says how many are unread (in
its text and its accessible name) and fits the header at 1280 and 390 px; the list opens a
notice (a POST that marks it read) onto its page; "Mark all as read" clears the bell."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from notices.models import Notice
from notices.services import notice_add
from tests.e2e.conftest import DESKTOP, MOBILE
from tests.e2e.test_flags import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _news(patient) -> None:
    record = patient.patient.pk
    notice_add(patient_id=record, kind=Notice.Kind.REPORT_UPDATE, key="flag:1", subject="An update on your report #1",
               body="The privacy office needs more information from you.", link="/flags/")
    notice_add(patient_id=record, kind=Notice.Kind.EXPORT_READY, key="export:1", subject="Your export is ready to download",
               link="/exports/")
    notice_add(patient_id=record, kind=Notice.Kind.NEW_ORGANIZATION, key="access:1",
               subject="An organisation accessed your scans for the first time", link="/access-log/")


def test_the_bell_counts_and_the_centre_marks_read(page: Page, live_server, patient, screenshot):
    _news(patient)
    base = live_server.url
    sign_in(page, base, patient)
    bell = page.get_by_role("link", name="Notifications: 3 unread")
    expect(bell.locator(".bell-count")).to_have_text("3 unread")
    header = page.locator(".site-header")
    # On a phone the links fold into the menu button, which carries the count.
    for viewport, holder in ((DESKTOP, bell), (MOBILE, page.get_by_role("button", name="Menu 3 unread"))):
        page.set_viewport_size(viewport)
        box, head = holder.bounding_box(), header.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (viewport, box)
        assert head["y"] <= box["y"] and box["y"] + box["height"] <= head["y"] + head["height"], (viewport, box, head)
        # "3 unread" stays on one line: no taller than one line of its text.
        count = holder.locator(".bell-count")
        line = count.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
        assert count.bounding_box()["height"] <= line * 1.5, viewport
    page.set_viewport_size(DESKTOP)

    bell.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Notifications")
    expect(page.locator("#notices-summary")).to_have_text("3 unread")
    screenshot(page, "notices")
    page.get_by_role("button", name="Your export is ready to download", exact=True).click()
    expect(page).to_have_url(f"{base}/exports/")
    expect(page.get_by_role("link", name="Notifications: 2 unread")).to_be_visible()

    page.get_by_role("link", name="Notifications: 2 unread").click()
    page.get_by_role("button", name="Mark all as read").click()
    expect(page.get_by_role("link", name="Notifications: none unread")).to_be_visible()
    expect(page.locator(".bell-count")).to_have_count(0)
    # Read notices are plain links to their pages.
    expect(page.get_by_role("link", name="An update on your report #1")).to_have_attribute("href", "/flags/")

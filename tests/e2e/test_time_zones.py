"""A patient far from the hospital's zone reads every time in their own (issue 19, item 10).

Chromium set to Pacific/Auckland: the account page offers that zone (static/js/timezone.js),
one key press saves it, and from then on the pages show New Zealand times with "NZDT"/"NZST".
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.audit.conftest import clinician_view
from tests.e2e.conftest import ACTION_TIMEOUT_MS, DESKTOP, MOBILE
from tests.e2e.test_viewer import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
NZ_TIME = re.compile(r"\d{1,2} \w{3} \d{4}, \d{2}:\d{2} NZ[DS]T")


@pytest.mark.parametrize("viewport", [DESKTOP, MOBILE], ids=["desktop", "phone"])
def test_the_browsers_zone_is_offered_and_then_used_everywhere(browser: Browser, live_server, site, patient, console, viewport):
    clinician_view(patient.patient, actor_name="Dr Far Away")
    context = browser.new_context(viewport=viewport, locale="en-GB", timezone_id="Pacific/Auckland")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    sign_in(page, live_server.url, patient)

    page.goto(f"{live_server.url}/account/security/")
    expect(page.locator("#tz-suggest")).to_be_visible()
    expect(page.locator("#tz-suggest [data-zone]")).to_have_text("Pacific/Auckland")
    assert "UTC" in page.locator("#time-zone-heading + p").inner_text()
    # Keyboard: the offer's button is reached and pressed without a mouse.
    page.locator("#tz-use").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/account/security/"))
    expect(page.locator("#id_time_zone")).to_have_value("Pacific/Auckland")
    expect(page.locator("#tz-suggest")).to_be_hidden()  # nothing left to offer
    expect(page.locator("#time-zone-heading + p")).to_contain_text(NZ_TIME)
    select = page.locator("#id_time_zone").bounding_box()
    assert select["x"] >= 0 and select["x"] + select["width"] <= viewport["width"], select

    page.goto(f"{live_server.url}/access-log/")
    when = page.locator(".access-row .access-when time").first
    expect(when).to_have_text(NZ_TIME)
    assert when.get_attribute("datetime").endswith(("+13:00", "+12:00"))
    assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
    context.close()
    console.assert_clean()

"""The main menu on a phone: one "Menu" button instead of nine links wrapping over a quarter of
the screen; on a wide screen the links as before. Keyboard: Enter opens it, Escape closes it and
returns to the button."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DESKTOP, MOBILE
from tests.e2e.test_viewer import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_menu_folds_into_one_button_on_a_phone(page: Page, live_server, site, patient):
    sign_in(page, live_server.url, patient)
    toggle = page.get_by_role("button", name="Menu")
    log_link = page.get_by_role("link", name="Who saw my scans")

    # A wide screen: every link, no button.
    expect(toggle).to_be_hidden()
    expect(log_link).to_be_visible()

    page.set_viewport_size(MOBILE)
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(log_link).to_be_hidden()
    # The header is one row: the page's heading starts in the top fifth of the screen (the nine
    # links took four rows, 230 px of 844).
    heading = page.get_by_role("heading", level=1).bounding_box()
    assert heading is not None and heading["y"] < MOBILE["height"] / 5, heading

    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(log_link).to_be_visible()
    # One link a line, each wide enough to hit with a thumb, nothing wider than the screen.
    box = log_link.bounding_box()
    assert box is not None and box["height"] >= 24 and box["width"] > MOBILE["width"] / 2, box
    assert page.evaluate("() => document.documentElement.scrollWidth") <= MOBILE["width"]

    page.keyboard.press("Tab")  # into the list
    page.keyboard.press("Escape")
    expect(log_link).to_be_hidden()
    expect(toggle).to_be_focused()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    toggle.click()
    log_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Who saw my scans")
    expect(page.get_by_role("link", name="Who saw my scans")).to_be_hidden()  # closed again on the new page

    page.set_viewport_size(DESKTOP)
    expect(toggle).to_be_hidden()
    expect(page.get_by_role("link", name="Who saw my scans")).to_be_visible()

"""Each role lands on its own start page with its own menu (issue 19, item 4), in Chromium at
desktop and phone widths: an officer on the flag queue with the office's menu (paper consent
included, and its password page names what it confirms); an administrator on a page that leads
to the admin, which passes axe."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from tests.e2e.conftest import DESKTOP, MOBILE
from tests.e2e.test_accessibility import AXE_JS, FAILING_IMPACTS, axe_violations
from tests.e2e.test_flags import sign_in
from tests.factories import AuthenticatorAppFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OFFICER_MENU = ["Flag queue", "Dashboard", "Connected systems", "Paper consent", "Account security"]


def _menu(page: Page):
    return page.get_by_role("navigation", name="Main")


def _menu_fits(page: Page) -> None:
    """Every link of the menu is on screen (the header wraps rather than running off it)."""
    width = page.viewport_size["width"]
    for link in _menu(page).get_by_role("link").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (link.inner_text(), box, width)


def test_an_officer_lands_on_the_queue_with_the_office_menu(page: Page, live_server, officer, screenshot):
    base = live_server.url
    sign_in(page, base, officer)
    expect(page).to_have_url(f"{base}/privacy-office/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Flags queue")
    menu = _menu(page)
    expect(menu.get_by_role("link")).to_have_text(OFFICER_MENU)
    expect(menu.get_by_role("link", name="Flag queue")).to_have_attribute("aria-current", "page")
    expect(menu.get_by_role("link", name="My scans")).to_have_count(0)
    expect(menu.get_by_role("link", name="Notifications")).to_have_count(0)  # notices are a patient's
    for viewport in (DESKTOP, MOBILE):
        page.set_viewport_size(viewport)
        _menu_fits(page)
    page.set_viewport_size(DESKTOP)

    # Paper consent, which nothing linked to: the password page says what it confirms.
    menu.get_by_role("link", name="Paper consent").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    expect(page.locator("#reauth-purpose")).to_contain_text("Before you record a patient's paper consent form")
    # The username field there is for password managers only: not shown.
    expect(page.locator("main input[autocomplete=username]")).to_be_hidden()


def test_an_administrator_lands_on_a_page_that_leads_to_the_admin(page: Page, live_server, screenshot):
    assert AXE_JS.exists(), f"{AXE_JS} is missing: run `make node-deps` (npm ci)"
    admin = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=admin)
    base = live_server.url
    page.context.add_init_script(path=str(AXE_JS))
    sign_in(page, base, admin)
    expect(page).to_have_url(f"{base}/start/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Administration")
    expect(page.get_by_text("This account is not linked to a patient record.")).to_have_count(0)
    expect(_menu(page).get_by_role("link", name="Administration")).to_have_attribute("aria-current", "page")
    screenshot(page, "admin-start")
    for viewport in (DESKTOP, MOBILE):
        page.set_viewport_size(viewport)
        _menu_fits(page)
        serious = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
        assert not serious, serious
    page.set_viewport_size(DESKTOP)
    page.get_by_role("link", name="Open the administration site").click()
    expect(page).to_have_url(f"{base}/admin/")

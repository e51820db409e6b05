"""A patient's first visit, in Chromium: activation code → account → email → authenticator →
recovery codes → signing in again with the app and with a recovery code.

Along the way: no page reports a Content Security Policy violation, and the skip link is the
first Tab stop and moves focus to the main content. With LIGHTBOX_SCREENSHOTS=1 the run also
refreshes docs/screenshots/.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from pathlib import Path

import pytest
from django.core import mail
from django_otp.oath import TOTP
from playwright.sync_api import Page, expect

from accounts.services import activation_code_issue
from tests.factories import PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EMAIL = "ada.lovelace@example.org"
PASSWORD = "violet kettle harbour 1815"
BIRTH_DATE = dt.date(1980, 1, 31)


def totp_code(secret: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for ``secret`` now (or ``steps_ahead`` periods later)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, digits=6)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def assert_skip_link_first(page: Page) -> None:
    """Keyboard users: the first Tab lands on the skip link, and following it focuses <main>."""
    page.locator("body").focus()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def sign_in_with_password(page: Page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Lightbox")
    expect(page.get_by_role("navigation")).to_have_count(0)


def expect_home(page: Page, patient_name: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {patient_name}")
    expect(page.get_by_role("link", name="My scans", exact=True)).to_have_attribute("aria-current", "page")


def test_patient_signs_up_enrols_and_signs_in_with_each_factor(
    page: Page, live_server, site, console, screenshot, tmp_path: Path
):
    base = live_server.url
    patient = PatientFactory(name="Ada Lovelace", birth_date=BIRTH_DATE)
    activation_code = activation_code_issue(patient=patient)

    # The sign-in page says what Lightbox is and leads a new patient to sign-up; no menu yet.
    page.goto(f"{base}/accounts/login/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Lightbox")
    expect(page.get_by_text("Lightbox is St. Example Hospital's secure website for patients")).to_be_visible()
    expect(page.get_by_role("navigation")).to_have_count(0)
    assert_skip_link_first(page)
    screenshot(page, "login")
    page.get_by_role("link", name="Create your account").click()

    # 1. Sign up with the code from the hospital's letter.
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")
    expect(page).to_have_url(f"{base}/accounts/signup/")
    screenshot(page, "signup")
    page.get_by_label("Activation code").fill(activation_code.lower())
    page.get_by_label("Date of birth").fill(BIRTH_DATE.isoformat())
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    # 2. The verification email's link confirms the address.
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [EMAIL]
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", message.body)
    assert link, message.body
    page.goto(link.group(0))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your email address")
    expect(page.get_by_text(EMAIL)).to_be_visible()
    page.get_by_role("button", name="Confirm email address").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Lightbox")

    # 3. First sign-in goes straight to setting up the authenticator app.
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up your authenticator app")
    expect(page.get_by_role("link", name="My scans", exact=True)).to_have_count(0)  # not verified yet: only "Sign out"
    screenshot(page, "enrolment")
    page.get_by_text("Can't scan? Type this key instead").click()
    secret_text = page.locator("#totp-secret code")
    expect(secret_text).to_be_visible()
    secret = re.sub(r"\s+", "", secret_text.inner_text())
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    page.get_by_label("6-digit code from the app").fill(totp_code(secret))
    page.get_by_role("button", name="Confirm code").click()

    # 4. Recovery codes, shown once: the download holds exactly what the page shows.
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your recovery codes")
    code_items = page.locator("#recovery-codes li")
    expect(code_items).to_have_count(10)
    codes = [c.strip() for c in code_items.all_inner_texts()]
    assert all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", c) for c in codes), codes
    screenshot(page, "recovery-codes")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == "lightbox-recovery-codes.txt"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    downloaded = saved.read_text()
    assert all(code in downloaded for code in codes), downloaded
    page.get_by_role("link", name="I have saved my codes, continue").click()

    # 5. Home, then the security page; the menu marks where we are.
    expect_home(page, "Ada Lovelace")
    assert_skip_link_first(page)
    screenshot(page, "home")
    page.get_by_role("link", name="Account security").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account security")
    expect(page.get_by_role("link", name="Account security")).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("You have 10 unused recovery codes.")).to_be_visible()
    screenshot(page, "security")
    sign_out(page)

    # 6. Signing in again takes the password and a fresh app code. The enrolment used this
    # 30-second step's code and codes are single-use, so type the next step's (one step of
    # clock tolerance is allowed): no waiting for the clock.
    sign_in_with_password(page, base)
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    screenshot(page, "verify")
    page.get_by_label("Code").fill(totp_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Continue").click()
    expect_home(page, "Ada Lovelace")
    sign_out(page)

    # 7. Lost phone: a recovery code works instead, once.
    sign_in_with_password(page, base)
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect_home(page, "Ada Lovelace")

    console.assert_clean()

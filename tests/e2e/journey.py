"""Steps the whole-portal journeys share (test_patient_journey.py, test_officer_journey.py).

Each helper acts as a person would (labels, buttons, links) and asserts only what that person
needs to see to carry on; the journeys assert the rest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core import mail
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ACTION_TIMEOUT_MS, DESKTOP, ConsoleWatch
from tests.e2e.test_signup_journey import totp_code

# Playwright's default wait for an ``expect``; restored after each journey.
EXPECT_TIMEOUT_MS = 5_000


@pytest.fixture(autouse=True)
def journey_expect_timeout() -> Iterator[None]:
    """A journey makes some sixty expectations on a machine other tests keep busy: each may wait
    as long as an action may (conftest's ACTION_TIMEOUT_MS) before it counts as failed. Import
    this fixture into a journey's module to use it."""
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    yield
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def heading(page: Page):
    return page.get_by_role("heading", level=1)


def last_email_link(pattern: str) -> str:
    """The link in the newest email whose body matches ``pattern`` (Django's locmem outbox)."""
    for message in reversed(mail.outbox):
        found = re.search(pattern, message.body)
        if found:
            return found.group(0)
    raise AssertionError(f"no email links to {pattern}: {[m.subject for m in mail.outbox]}")


def sign_up(page: Page, base: str, *, activation_code: str, birth_date: dt.date, email: str, password: str) -> str:
    """Activation code and birth date -> account -> emailed link -> authenticator -> recovery
    codes, ending on the home page. Returns the authenticator key the page showed."""
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name="Create your account").click()
    for label, value in [("Activation code", activation_code), ("Date of birth", birth_date.isoformat()), ("Email", email),
                         ("Password", password), ("Password (again)", password)]:
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Create account").click()
    expect(heading(page)).to_have_text("Check your email")

    page.goto(last_email_link(r"https?://\S+/accounts/confirm-email/\S+/"))
    page.get_by_role("button", name="Confirm email address").click()
    expect(heading(page)).to_have_text("Sign in to Lightbox")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.keyboard.press("Enter")

    expect(heading(page)).to_have_text("Set up your authenticator app")
    page.get_by_text("Can't scan? Type this key instead").click()
    secret = re.sub(r"\s+", "", page.locator("#totp-secret code").inner_text())
    page.get_by_label("6-digit code from the app").fill(totp_code(secret))
    page.keyboard.press("Enter")

    expect(heading(page)).to_have_text("Save your recovery codes")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved my codes, continue").click()
    return secret


def confirm_password(page: Page, password: str) -> None:
    """allauth's "Confirm it's you" step before a sensitive action; it resumes the action (or,
    for a download, returns to the page it started from: ``core.reauth``)."""
    expect(heading(page)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(password)
    page.keyboard.press("Enter")


def download(page: Page, folder: Path, click: Callable[[], None]) -> Path:
    """Run ``click`` and save the download it starts under its suggested name."""
    with page.expect_download() as info:
        click()
    target = folder / info.value.suggested_filename
    info.value.save_as(target)
    return target


@contextlib.contextmanager
def second_browser(browser: Browser, console: ConsoleWatch) -> Iterator[Page]:
    """Another person's browser (own cookies), watched for CSP and JavaScript errors too."""
    context = browser.new_context(viewport=DESKTOP, locale="en-GB", accept_downloads=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    other = context.new_page()
    other.on("console", console.on_console)
    other.on("pageerror", console.on_page_error)
    try:
        yield other
    finally:
        context.close()


@contextlib.contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold an exclusive lock on ``table`` from a separate database session: anyone who reads it
    (here: a Celery worker packaging an export) waits until the block ends. Lets a test see an
    intermediate state for as long as it needs without sleeping."""
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"] or 5432,
    ) as conn:
        conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield
        conn.rollback()

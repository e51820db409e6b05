"""Browser fixtures for the journeys in tests/e2e (Playwright's sync API driving Debian's Chromium).

Playwright's own browser download is not available here, so the tests launch the system
Chromium. Set ``LIGHTBOX_SCREENSHOTS=1`` to (re)write the screenshots in docs/screenshots/;
ordinary runs leave them alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sites.models import Site
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = os.environ.get("LIGHTBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
SCREENSHOT_DIR = Path(settings.BASE_DIR) / "docs" / "screenshots"
# Playwright's default of 30 s per action hides a hung page for too long; 10 s is ample locally.
ACTION_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; Django would otherwise refuse the
    # ORM calls the test makes between browser steps. Set only while the browser runs: left in
    # os.environ it would leak into other tests (``check --deploy`` rejects it, async.E001).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class ConsoleWatch:
    """Collects console messages and page errors; CSP violations fail the test."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.page_errors: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        self.messages.append(f"[{message.type}] {message.text}")

    def on_page_error(self, error) -> None:
        self.page_errors.append(str(error))

    @property
    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]

    def assert_clean(self) -> None:
        assert not self.csp_violations, "CSP violations:\n" + "\n".join(self.csp_violations)
        assert not self.page_errors, "JavaScript errors:\n" + "\n".join(self.page_errors)


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
def page(browser: Browser, console: ConsoleWatch) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True, locale="en-GB")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    yield page
    context.close()
    console.assert_clean()


@pytest.fixture
def site(live_server, settings) -> Site:
    """allauth's emails name the site; transactional tests may have flushed the migration's row.
    Every link in an email comes from SITE_URL (core.links): here, the live server."""
    settings.SITE_URL = live_server.url
    host = live_server.url.split("://", 1)[1]
    site, _ = Site.objects.update_or_create(id=settings.SITE_ID, defaults={"domain": host, "name": settings.SITE_NAME})
    return site


class Screenshots:
    """Desktop and mobile screenshots of the current page, only when LIGHTBOX_SCREENSHOTS=1."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Page, name: str) -> None:
        if not self.enabled:
            return
        # Screenshots are taken before any typing, so a focused field's ring is not in them.
        page.evaluate("document.activeElement && document.activeElement.blur()")
        self._save(page, SCREENSHOT_DIR / f"{name}-desktop.png")
        page.set_viewport_size(MOBILE)
        self._save(page, SCREENSHOT_DIR / f"{name}-mobile.png")
        page.set_viewport_size(DESKTOP)

    @staticmethod
    def _save(page: Page, path: Path) -> None:
        """A whole-page PNG reduced to 256 colours: no visible loss on these flat pages, and
        the README's screenshots stay a few MB in the repository instead of several times that."""
        page.screenshot(path=str(path), full_page=True)
        with Image.open(path) as shot:
            reduced = shot.convert("RGB").quantize(colors=256)
        reduced.save(path, optimize=True)


@pytest.fixture
def screenshot() -> Screenshots:
    return Screenshots(os.environ.get("LIGHTBOX_SCREENSHOTS", "") not in {"", "0", "false", "no"})

"""A patient reports a scan they never had; a privacy officer claims the report, asks nothing
more, resolves it with an outcome; the patient reads the outcome. Two browsers, real CSP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from audit.models import AccessEvent
from audit.services import record_access
from flags.models import Flag
from imaging.models import Study
from tests.e2e.conftest import ACTION_TIMEOUT_MS, DESKTOP, MOBILE, ConsoleWatch
from tests.factories import PASSWORD, totp_code
from tests.flags.conftest import make_study

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(page: Page, base: str, user) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Code").fill(totp_code(user.authenticatorapp_set.get()))
    page.get_by_role("button", name="Continue").click()
    expect(page).not_to_have_url(re.compile(r"/account/2fa/"))


def test_patient_flag_resolved_by_an_officer_end_to_end(page: Page, browser: Browser, console: ConsoleWatch, live_server, site, patient, officer, screenshot):
    study = make_study(patient.patient, description="CT chest")
    base = live_server.url

    # The patient reports the scan.
    sign_in(page, base, patient)
    page.goto(f"{base}/flags/new/?study={study.pk}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Report a problem with a scan")
    screenshot(page, "flag-new")
    page.get_by_label("I never had this scan").check()
    page.get_by_label("Tell us more").fill("I have never had a chest CT.")
    page.get_by_role("button", name="Send report").click()
    expect(page.get_by_text("Your report has been sent to the privacy office.")).to_be_visible()
    flag = Flag.objects.get(patient=patient.patient)
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Report #{flag.pk}")
    page.goto(f"{base}/")
    expect(page.get_by_text("Under review")).to_be_visible()

    # The officer, in a separate browser context, claims and resolves it.
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    office = context.new_page()
    office.on("console", console.on_console)
    office.on("pageerror", console.on_page_error)
    sign_in(office, base, officer)
    office.goto(f"{base}/privacy-office/")
    expect(office.get_by_role("heading", level=1)).to_have_text("Flags queue")
    office.get_by_role("button", name=f"Claim #{flag.pk}").click()
    expect(office.get_by_role("heading", level=1)).to_contain_text(f"Flag #{flag.pk}")
    expect(office.get_by_text("I have never had a chest CT.").first).to_be_visible()
    screenshot(office, "flag-officer")
    # flags.js shows the outcome box only when closing.
    outcome = office.get_by_label("Outcome for the patient")
    expect(outcome).to_be_hidden()
    office.get_by_label("New status").select_option("resolved")
    expect(outcome).to_be_visible()
    outcome.fill("This scan belonged to another patient with a similar name. It has been moved off your record.")
    office.get_by_role("button", name="Save status").click()
    expect(office.get_by_text("Status changed.")).to_be_visible()
    # The dashboard counts it (chart drawn as inline SVG under the CSP, with its table).
    office.goto(f"{base}/privacy-office/dashboard/")
    expect(office.locator("#stat-open")).to_have_text("0")
    expect(office.locator("svg[role=img]")).to_be_visible()
    expect(office.locator("#chart-table tbody tr")).to_have_count(12)
    screenshot(office, "flag-dashboard")
    context.close()

    # The patient sees the outcome, and the officer's look in their access log.
    page.goto(f"{base}/flags/")
    expect(page.get_by_text("Your report is closed. Sign in to read the outcome.")).to_be_visible()
    page.get_by_role("link", name=re.compile(f"#{flag.pk}")).first.click()
    expect(page.get_by_role("heading", name="Outcome")).to_be_visible()
    expect(page.get_by_text("It has been moved off your record.")).to_be_visible()
    screenshot(page, "flag-outcome")
    study.refresh_from_db()
    assert study.status == Study.Status.AVAILABLE
    # The flag page after claiming and again after saving the status: one look, the same day
    # (one event per officer, flag, study and day).
    looks = AccessEvent.objects.filter(patient=patient.patient, actor_type="privacy_office", purpose="privacy_investigation")
    assert looks.count() == 1 and {e.actor_name for e in looks} == {officer.public_name}


# Issue 19 item 5: every word of a tag, table cell or label sits on one line. A word split across
# lines ("Refuse d", "Receiv ed") has more than one client rect; words are split on spaces and
# hyphens, where a browser may break a line properly.
BROKEN_WORDS = """(selector) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const broken = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length) continue;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent;
      const re = /[^\\s\\-]+/g;
      for (let m = re.exec(text); m; m = re.exec(text)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""
WHOLE_WORDS = ".badge, td, th, dt, dd, summary"


def test_officer_pages_never_break_a_word_or_a_tag(page: Page, live_server, site, patient, officer):
    """The flag page (all panels open), the queue and the dashboard at desktop and phone widths:
    tags are one line each (height no more than one line box) and no word is split."""
    from consent.demo import build_demo_consent
    from flags.demo import build_demo_flag
    from tests.flags.conftest import make_event

    record = patient.patient
    study = make_study(record, description="XR chest 2 views")
    make_study(record, description="MRI brain")
    build_demo_consent(record)  # granted, refused and a paper decision: the tags that wrapped
    for days in (40, 20, 5):
        make_event(record, study=study, organization="Northlight AI (chest X-ray triage)", purpose="ai_inference",
                   when=timezone.now() - dt.timedelta(days=days))
    record_access(patient=record, study=study, action="ingest", purpose="operations", actor_type="system",
                  actor_name="Lightbox import", organization="St. Example Hospital", source="import")
    flag = build_demo_flag(record, officer)
    base = live_server.url
    sign_in(page, base, officer)
    for width, height in ((DESKTOP["width"], DESKTOP["height"]), (MOBILE["width"], MOBILE["height"])):
        page.set_viewport_size({"width": width, "height": height})
        for path in (f"/privacy-office/flags/{flag.pk}/", "/privacy-office/", "/privacy-office/dashboard/"):
            page.goto(base + path)
            assert page.evaluate(BROKEN_WORDS, WHOLE_WORDS) == [], f"{path} at {width}px"
            # Nothing wider than the screen, panels open (the script above opened them).
            assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), path
            for tag in page.locator(".badge").all():
                box = tag.bounding_box()
                line = float(tag.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 1.2 * parseFloat(getComputedStyle(e).fontSize)"))
                assert box is not None and box["height"] < 1.6 * line + 8, f"{tag.inner_text()!r} wraps on {path} at {width}px"


def test_the_flag_page_context_panels_open_from_the_keyboard(page: Page, live_server, site, patient, officer):
    """Issue 19 item 5: the context sits in panels; each opens with the keyboard alone."""
    from flags.demo import build_demo_flag

    study = make_study(patient.patient, description="XR chest 2 views")
    flag = build_demo_flag(patient.patient, officer)
    base = live_server.url
    sign_in(page, base, officer)
    page.goto(f"{base}/privacy-office/flags/{flag.pk}/")
    # The task comes first: the report, the conversation and the reply box precede the context.
    order = page.evaluate("""() => ['desc-heading', 'timeline-heading', 'reply-form', 'panel-consent', 'panel-study']
        .map(id => document.getElementById(id).getBoundingClientRect().top)""")
    assert order == sorted(order)
    panel = page.locator("#panel-study")
    expect(panel).not_to_have_attribute("open", "")
    expect(panel.get_by_role("button", name="Re-check integrity now")).to_be_hidden()
    panel.locator("summary").focus()
    assert page.evaluate("document.activeElement.closest('details').id") == "panel-study"
    page.keyboard.press("Enter")
    expect(panel).to_have_attribute("open", "")
    expect(panel.get_by_role("button", name="Re-check integrity now")).to_be_visible()
    expect(panel).to_contain_text(study.study_uid)
    page.keyboard.press("Space")
    expect(panel).not_to_have_attribute("open", "")

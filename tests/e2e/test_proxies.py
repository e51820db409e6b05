"""A parent acts for their child in Chromium (issue 21, docs/security.md §28): the hospital issues
a proxy code; the parent, signed in with their own account and second factor, enters it, switches
to the child, views a study and changes a consent choice; the child's access log and consent
history name the parent "on behalf of"; the privacy office ends the grant and the parent is
refused, in plain words.

Runs under the real CSP (the page fixture fails the test on any violation or JavaScript error).
With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/proxies-*.png.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from audit.models import AccessEvent
from consent.models import ConsentDecision
from consent.services import consent_policy_publish
from proxies.models import ProxyGrant
from tests.consent.conftest import make_study
from tests.e2e.test_viewer import sign_in
from tests.factories import PASSWORD, PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_parent_acts_for_their_child_until_the_grant_ends(page: Page, live_server, site, patient, screenshot, capsys):
    consent_policy_publish(version=1, text="The policy.", effective_from=timezone.now() - dt.timedelta(days=1))
    child = PatientFactory(name="Sam Doe", birth_date=dt.date(2019, 5, 4))
    study = make_study(child, "MR knee")
    parent = patient  # a patient of the hospital themselves: their own records stay one click away

    # The hospital issues the code (printed once).
    call_command("issue_proxy_code", child.mrn, "--relationship", "parent", "--scope", "view+consent")
    code = capsys.readouterr().out.strip()

    # The parent signs in with their own password and second factor and enters the code.
    sign_in(page, live_server.url, parent)
    page.get_by_role("link", name="People who can act for me").click()
    page.get_by_role("link", name="I have a proxy code for someone else").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Act for a family member or someone you care for")
    page.get_by_label("Proxy code").fill(code)
    page.get_by_label("Their date of birth").fill("2019-05-04")
    page.get_by_label("Your name").fill("Alex Doe")
    screenshot(page, "proxies-code")
    page.get_by_role("button", name="Use the code").click()
    expect(page.get_by_text("Viewing: Sam Doe — your child")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam Doe")

    # The switcher: back to their own records, then to the child again.
    page.get_by_label("Switch to").select_option(label="My own records")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {parent.patient.name}")
    page.get_by_label("Switch to").select_option(label="Sam Doe (parent)")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam Doe")
    screenshot(page, "proxies-switcher")

    # A study of the child.
    page.get_by_role("link", name="MR knee").first.click()
    expect(page).to_have_url(f"{live_server.url}/studies/{study.pk}/")

    # A consent choice, confirmed with the parent's own password.
    page.get_by_role("link", name="My choices", exact=True).click()
    page.locator("#scope-ai_training").get_by_role("link", name="Say yes to AI training").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Confirm my choice").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent receipt")
    expect(page.get_by_text("by Alex Doe (parent) on behalf of the patient")).to_be_visible()
    decision = ConsentDecision.objects.get(patient=child)
    assert decision.receipt["receipt"]["proxy"]["name"] == "Alex Doe"

    # The child's access log and consent history name the parent "on behalf of".
    page.get_by_role("link", name="Who saw my scans").click()
    expect(page.get_by_text("Alex Doe, parent acting on behalf of the patient").first).to_be_visible()
    screenshot(page, "proxies-log")
    page.goto(f"{live_server.url}/consent/history/")
    expect(page.get_by_text("Alex Doe (parent) on behalf of you, online")).to_be_visible()
    assert set(AccessEvent.objects.filter(patient=child).values_list("actor_name", flat=True)) == {"Alex Doe"}

    # The privacy office ends the grant: the parent's next click is refused, saying why.
    grant = ProxyGrant.objects.get()
    call_command("end_proxy", str(grant.pk), "--reason", "Court order")
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your access has ended")
    expect(page.get_by_text("You can no longer see Sam Doe's records.")).to_be_visible()
    screenshot(page, "proxies-ended")
    response = page.goto(f"{live_server.url}/studies/{study.pk}/")
    assert response.status == 404
    expect(page.get_by_text("Viewing: Sam Doe")).to_have_count(0)

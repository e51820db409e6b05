"""A parent acts for their child in Chromium (issue 21, docs/security.md §1, §28): the hospital
issues a proxy code; the parent, who is not a patient, signs up with it, confirms their email,
signs in and sets up their second factor, and only then uses the code; views a study of the child
and changes a consent choice; the child's access log and consent history name the parent "on
behalf of"; the privacy office ends the grant and the parent is refused, in plain words. A parent
who is a patient themselves enters a code from "People who can act for me" and switches between
their own records and their child's.

Runs under the real CSP (the page fixture fails the test on any violation or JavaScript error).
With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/proxies-*.png.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from audit.models import AccessEvent
from consent.models import ConsentDecision
from consent.services import consent_policy_publish
from proxies.models import ProxyGrant
from tests.consent.conftest import make_study
from tests.e2e.test_signup_journey import totp_code
from tests.e2e.test_viewer import sign_in
from tests.factories import PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PARENT_EMAIL = "alex.doe@example.net"
PARENT_PASSWORD = "amber tram under 4 bridges"


def test_a_parent_with_no_record_signs_up_with_the_code_and_acts_for_their_child(
    page: Page, live_server, site, screenshot, capsys
):
    base = live_server.url
    consent_policy_publish(version=1, text="The policy.", effective_from=timezone.now() - dt.timedelta(days=1))
    child = PatientFactory(name="Sam Doe", birth_date=dt.date(2019, 5, 4))
    study = make_study(child, "MR knee")

    # The hospital issues the code (printed once).
    call_command("issue_proxy_code", child.mrn, "--relationship", "parent", "--scope", "view+consent")
    code = capsys.readouterr().out.strip()

    # The parent, not a patient, signs up with the proxy code from the signup page's link.
    page.goto(f"{base}/accounts/signup/")
    page.get_by_role("link", name="Create an account with a proxy code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account to act for someone")
    page.get_by_label("Proxy code").fill(code)
    page.get_by_label("Their date of birth").fill("2019-05-04")
    page.get_by_label("Email").fill(PARENT_EMAIL)
    page.get_by_label("Password", exact=True).fill(PARENT_PASSWORD)
    page.get_by_label("Password (again)").fill(PARENT_PASSWORD)
    screenshot(page, "proxies-signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    assert not ProxyGrant.objects.exists()  # no grant without a second factor (§1)

    # Email confirmed, first sign-in, the authenticator app.
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    page.goto(link.group(0))
    page.get_by_role("button", name="Confirm email address").click()
    page.get_by_label("Email").fill(PARENT_EMAIL)
    page.get_by_label("Password").fill(PARENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up your authenticator app")
    assert not ProxyGrant.objects.exists()
    page.get_by_text("Can't scan? Type this key instead").click()
    secret = re.sub(r"\s+", "", page.locator("#totp-secret code").inner_text())
    page.get_by_label("6-digit code from the app").fill(totp_code(secret))
    page.get_by_role("button", name="Confirm code").click()
    page.get_by_role("link", name="I have saved my codes, continue").click()

    # Signed in with both factors: the held code is used now, with the parent's name.
    page.get_by_role("link", name="Use it to see their records").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Act for a family member or someone you care for")
    page.get_by_label("Your name").fill("Alex Doe")
    screenshot(page, "proxies-code")
    page.get_by_role("button", name="Use the code").click()
    expect(page.get_by_text("Viewing: Sam Doe — your child")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam Doe")
    screenshot(page, "proxies-switcher")

    # A study of the child.
    page.get_by_role("link", name="MR knee").first.click()
    expect(page).to_have_url(f"{live_server.url}/studies/{study.pk}/")

    # A consent choice, confirmed with the parent's own password.
    page.get_by_role("link", name="My choices", exact=True).click()
    page.locator("#scope-ai_training").get_by_role("link", name="Say yes to AI training").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PARENT_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Confirm my choice").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent receipt")
    expect(page.get_by_text("by Alex Doe (parent) on behalf of the patient")).to_be_visible()
    decision = ConsentDecision.objects.get(patient=child)
    assert decision.receipt["receipt"]["proxy"]["name"] == "Alex Doe"

    # The child's access log, read by the parent, says "You" for the parent's own looks (the child
    # reads them under the parent's name, "on behalf of"); the consent history names the parent.
    # They are the parent's own, not others' accesses: under "Everything" (and "Your own actions").
    page.get_by_role("link", name="Who saw my scans").click()
    expect(page.locator("#others-total")).to_have_text("0")
    page.get_by_role("link", name="Everything").click()
    expect(page.get_by_text("You viewed Sam Doe's").first).to_be_visible()
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


def test_a_parent_who_is_a_patient_switches_between_their_own_and_their_childs_records(
    page: Page, live_server, site, patient, capsys
):
    child = PatientFactory(name="Sam Doe", birth_date=dt.date(2019, 5, 4))
    call_command("issue_proxy_code", child.mrn, "--relationship", "parent")
    code = capsys.readouterr().out.strip()

    sign_in(page, live_server.url, patient)
    page.get_by_role("link", name="People who can act for me").click()
    page.get_by_role("link", name="I have a proxy code for someone else").click()
    page.get_by_label("Proxy code").fill(code)
    page.get_by_label("Their date of birth").fill("2019-05-04")
    page.get_by_label("Your name").fill("Alex Doe")
    page.get_by_role("button", name="Use the code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam Doe")

    page.get_by_label("Switch to").select_option(label="My own records")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {patient.patient.name}")
    page.get_by_label("Switch to").select_option(label="Sam Doe (your child)")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam Doe")

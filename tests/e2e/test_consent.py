"""A patient changes a consent choice in Chromium (reauthentication, confirmation) and
downloads its signed receipt, which verifies with the published key.

Runs under the real CSP (the page fixture fails the test on any violation or JavaScript
error). With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/consent-*.png.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect

from audit.models import AccessEvent
from consent import receipts
from consent.models import ConsentDecision
from consent.services import consent_policy_publish
from tests.e2e.test_viewer import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_patient_says_yes_to_ai_training_and_keeps_the_signed_receipt(page: Page, live_server, site, patient, tmp_path, screenshot, capsys):
    consent_policy_publish(version=1, text="The policy.", effective_from=timezone.now() - dt.timedelta(days=1))
    sign_in(page, live_server.url, patient)

    page.get_by_role("link", name="My choices", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("How your scans may be used")
    card = page.locator("#scope-ai_training")
    expect(card.get_by_text("No, not allowed")).to_be_visible()
    screenshot(page, "consent")

    # Saying yes asks for the password again, then shows what it means before anything changes.
    card.get_by_role("link", name="Say yes to AI training").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it's you")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your choice: AI training")
    expect(page.get_by_role("heading", name="Please confirm: you are saying yes")).to_be_visible()
    expect(page.get_by_text("cannot forget them").first).to_be_visible()
    assert not ConsentDecision.objects.exists()
    expect(page.get_by_label("Yes, my scans may be used for this")).to_be_checked()
    page.get_by_role("button", name="Confirm my choice").click()

    # The receipt: printable page, and a signed JSON download.
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent receipt")
    expect(page.get_by_role("status")).to_contain_text("Your choice is saved")
    decision = ConsentDecision.objects.get()
    assert (decision.scope, decision.decision, decision.channel) == ("ai_training", "granted", "portal")
    expect(page.get_by_text(str(decision.receipt_id))).to_be_visible()
    expect(page.get_by_role("button", name="Print this receipt")).to_be_visible()
    screenshot(page, "consent-receipt")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download signed receipt (JSON)").click()
    download = info.value
    assert download.suggested_filename == f"consent-receipt-{decision.receipt_id}.json"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    body = receipts.verify(json.loads(path.read_text()))
    assert body["decision"] == "granted" and body["purposes"][0]["purpose"] == "ai_training"
    call_command("verify_receipt", str(path))
    assert "VALID" in capsys.readouterr().out

    # Back on the cards, the choice shows; the change is in the access log.
    page.get_by_role("link", name="My choices", exact=True).click()
    expect(page.locator("#scope-ai_training").get_by_text("Yes, allowed")).to_be_visible()
    assert AccessEvent.objects.filter(action="modify", purpose="patient_request").count() == 1

    # The cards fit a phone-sized screen without scrolling sideways.
    page.set_viewport_size({"width": 360, "height": 780})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the consent page scrolls sideways on a phone ({width}px wide)"

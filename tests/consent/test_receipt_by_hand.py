"""The receipt page states the canonical form its signature covers (issue 19 item 13). The
page's own script is run, as a reader would run it, against a real downloaded receipt and the
published key: if the stated rule differed from ``consent.receipts.canonical`` it would fail."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pytest

from consent import receipts
from consent.models import ConsentDecision
from core import signing
from tests.conftest import reauthenticate

pytestmark = pytest.mark.django_db

SCRIPT = re.compile(r'<pre[^>]*id="verify-script"[^>]*><code>(.*?)</code></pre>', re.S)


@pytest.fixture
def by_hand(settings, patient_client, patient, policy, tmp_path):
    # A name outside ASCII: a rule that escaped it (\u00f4) would sign other bytes.
    settings.HOSPITAL_NAME = "Hôpital Saint-Éxemple"
    reauthenticate(patient_client)
    patient_client.post("/consent/change/research/", {"decision": "granted"})
    receipt_id = ConsentDecision.objects.get(patient=patient.patient).receipt_id
    page = patient_client.get(f"/consent/receipts/{receipt_id}/").content.decode()
    found = SCRIPT.search(page)
    assert found, "the receipt page shows no script for checking by hand"
    script = tmp_path / "check_receipt.py"
    script.write_text(html.unescape(found.group(1)))
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(patient_client.get(f"/consent/receipts/{receipt_id}/receipt.json").content)
    key = tmp_path / "lightbox-signing-key.pem"
    key.write_bytes(patient_client.get("/.well-known/lightbox-signing-key.pem").content)
    return page, script, receipt, key


def run(script, receipt, key) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(receipt), str(key)], capture_output=True, text=True, timeout=60)


def test_the_stated_rule_verifies_a_real_receipt(by_hand):
    page, script, receipt, key = by_hand
    document = json.loads(receipt.read_text(encoding="utf-8"))
    assert "Hôpital" in document["receipt"]["controller"]["name"]
    result = run(script, receipt, key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")


def test_the_stated_rule_rejects_an_altered_receipt(by_hand):
    _page, script, receipt, key = by_hand
    document = json.loads(receipt.read_text(encoding="utf-8"))
    document["receipt"]["decision"] = "refused"
    receipt.write_text(json.dumps(document, indent=2), encoding="utf-8")
    result = run(script, receipt, key)
    assert result.returncode != 0 and "InvalidSignature" in result.stderr


def test_the_page_names_the_algorithm_the_key_and_the_canonical_form(by_hand):
    page, *_ = by_hand
    assert "Ed25519" in page and "RFC 8032" in page
    assert receipts.key_id(signing.private_key().public_key()) in page
    for words in ("sorted order at every level", "no spaces or line breaks", "UTF-8"):
        assert words in page
    # The words match the code: this is the rule receipts.canonical applies.
    assert receipts.CANONICAL_JSON["sort_keys"] and receipts.CANONICAL_JSON["separators"] == (",", ":")
    assert receipts.CANONICAL_JSON["ensure_ascii"] is False

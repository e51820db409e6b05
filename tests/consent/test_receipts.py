"""Signed receipts verify with the published public key; a tampered or foreign one fails,
with ``manage.py verify_receipt`` giving a clear reason (no traceback)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command

from consent import receipts
from consent.services import _write_decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def receipt_file(patient, policy, tmp_path):
    decision = _write_decision(patient=patient.patient, scope="ai_training", decision="refused", study=None, policy=policy,
                               actor=patient, channel="portal", kind="change", recorded_by="patient")
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(decision.receipt, indent=2))
    return path


def test_a_receipt_verifies(receipt_file, capsys):
    call_command("verify_receipt", str(receipt_file))
    out = capsys.readouterr().out
    assert out.startswith("VALID: receipt ") and "ai_training refused under policy v1 (portal)" in out


def test_verifies_with_the_published_public_key(client, receipt_file, tmp_path, capsys):
    pem = client.get("/.well-known/lightbox-signing-key.pem").content
    (tmp_path / "key.pem").write_bytes(pem)
    call_command("verify_receipt", str(receipt_file), "--public-key", str(tmp_path / "key.pem"))
    assert "VALID" in capsys.readouterr().out


@pytest.mark.parametrize(("field", "value"), [("decision", "granted"), ("channel", "paper"), ("issued_at", "2020-01-01T00:00:00.000000Z")])
def test_a_tampered_receipt_fails(receipt_file, field, value):
    document = json.loads(receipt_file.read_text())
    document["receipt"][field] = value
    receipt_file.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="altered after signing"):
        call_command("verify_receipt", str(receipt_file))


def test_a_receipt_checked_against_another_key_fails(receipt_file, tmp_path):
    other = Ed25519PrivateKey.generate().public_key()
    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(CommandError, match="signed by another key"):
        call_command("verify_receipt", str(receipt_file), "--public-key", str(tmp_path / "other.pem"))


def test_bad_input_is_a_clear_error(tmp_path, receipt_file):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("verify_receipt", str(tmp_path / "missing.json"))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("verify_receipt", str(tmp_path / "junk.json"))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(CommandError, match="not a Lightbox consent receipt"):
        call_command("verify_receipt", str(tmp_path / "other.json"))
    document = json.loads(receipt_file.read_text())
    document["signature"]["value"] = "!!!"
    receipt_file.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="not valid base64"):
        call_command("verify_receipt", str(receipt_file))


def test_receipt_carries_the_iso_27560_kantara_fields(receipt_file, patient, policy):
    body = receipts.verify(json.loads(receipt_file.read_text()))
    assert set(receipts.REQUIRED_FIELDS) <= set(body)
    assert body["subject"]["pseudonym"] == receipts.subject_pseudonym(patient.patient.pk)
    assert body["policy"]["sha256"] == policy.sha256 == receipts.hashlib.sha256(policy.text.encode()).hexdigest()
    assert body["public_key_url"].endswith("/.well-known/lightbox-signing-key.pem")

"""Signed consent receipts (fields after ISO/IEC TS 27560:2023 and the Kantara Consent Receipt 1.1).

A receipt is a JSON document ``{"receipt": {...}, "signature": {...}}``. The signature is
Ed25519 over the canonical JSON of ``receipt`` (sorted keys, no whitespace, UTF-8), made with
Lightbox's signing key (``core.signing``); the public half is published at
``/.well-known/lightbox-signing-key.pem``, so anyone holding a receipt can check it without us.

The subject is pseudonymous: a keyed hash of the patient's record id, stable for one hospital
(the key is ``SECRET_KEY``) and meaningless outside it, so a receipt that leaks names nobody.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.urls import reverse

from core import crypto, signing

SCHEMA = "lightbox-consent-receipt/1"
ALGORITHM = "Ed25519"
# What each scope means, as the receipt states it (the patient-facing cards say it at length).
PURPOSE_TEXT = {
    "ai_training": "Use of imaging data to build or improve AI products",
    "research": "Use of imaging data in research studies",
    "commercial": "Licensing of imaging data to companies",
    "teaching": "Use of imaging data to teach health professionals",
}
REQUIRED_FIELDS = (
    "schema",
    "receipt_id",
    "issued_at",
    "controller",
    "subject",
    "purposes",
    "decision",
    "policy",
    "channel",
)


class ReceiptError(Exception):
    """A receipt that is malformed, tampered with, or signed by another key."""


# The canonical form the signature covers; the receipt page states it in words and as a short
# script (templates/consent/receipt.html), and tests/consent/test_receipt_by_hand.py runs that
# script against real receipts, so the page and this rule cannot drift apart.
CANONICAL_JSON = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes signed: ``document`` as JSON with keys sorted at every level, no whitespace,
    non-ASCII characters as themselves (not \\u escapes), encoded as UTF-8."""
    return json.dumps(document, **CANONICAL_JSON).encode("utf-8")


def subject_pseudonym(patient_id: int) -> str:
    return crypto.keyed_hash(str(patient_id), purpose="consent-subject")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    *,
    receipt_id: str,
    decided_at: dt.datetime,
    patient_id: int,
    scope: str,
    decision: str,
    study_uid: str | None,
    policy_version: int,
    policy_sha256: str,
    channel: str,
    recorded_by: str,
    kind: str,
    proxy: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The unsigned receipt body for one decision. ``proxy`` ({"name", "relationship"}): the
    person who decided on the subject's behalf (docs/security.md §28): the receipt names both."""
    body = {
        "schema": SCHEMA,
        "receipt_id": receipt_id,
        "issued_at": _utc(decided_at),
        "controller": {"name": settings.HOSPITAL_NAME, "url": settings.SITE_URL},
        "subject": {"pseudonym": subject_pseudonym(patient_id), "method": "HMAC-SHA256 of the record id"},
        "purposes": [
            {
                "purpose": scope,
                "description": PURPOSE_TEXT[scope],
                "applies_to": {"study_uid": study_uid} if study_uid else "all_studies",
            }
        ],
        "decision": decision,
        "kind": kind,
        "policy": {"version": policy_version, "sha256": policy_sha256},
        "channel": channel,
        "recorded_by": recorded_by,
        "public_key_url": settings.SITE_URL.rstrip("/") + reverse("portal-signing-key"),
    }
    if proxy is not None:
        body["proxy"] = {"name": proxy["name"], "relationship": proxy["relationship"], "on_behalf_of": "subject"}
    return body


def sign(body: dict[str, Any]) -> dict[str, Any]:
    key = signing.private_key()
    signature = key.sign(canonical(body))
    return {
        "receipt": body,
        "signature": {
            "alg": ALGORITHM,
            "key_id": key_id(key.public_key()),
            "value": base64.b64encode(signature).decode(),
        },
    }


def verify(document: Any, public_key: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Check a signed receipt; return its body, or raise ``ReceiptError`` saying what is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        raise ReceiptError("not a Lightbox consent receipt: no 'receipt' object")
    body, sig = document["receipt"], document.get("signature")
    if body.get("schema") != SCHEMA:
        raise ReceiptError(f"unknown receipt schema {body.get('schema')!r} (expected {SCHEMA})")
    missing = [name for name in REQUIRED_FIELDS if name not in body]
    if missing:
        raise ReceiptError(f"the receipt lacks {', '.join(missing)}")
    if not isinstance(sig, dict) or sig.get("alg") != ALGORITHM or not isinstance(sig.get("value"), str):
        raise ReceiptError("the receipt has no Ed25519 signature")
    try:
        raw = base64.b64decode(sig["value"], validate=True)
    except ValueError as exc:
        raise ReceiptError("the signature is not valid base64") from exc
    key = public_key or signing.private_key().public_key()
    try:
        key.verify(raw, canonical(body))
    except InvalidSignature as exc:
        if sig.get("key_id") and sig["key_id"] != key_id(key):
            raise ReceiptError(f"signed by another key ({sig['key_id']}), not this one ({key_id(key)})") from exc
        raise ReceiptError("the signature does not match: the receipt was altered after signing") from exc
    return body


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ReceiptError(f"the public key file is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptError("the public key is not an Ed25519 key")
    return key

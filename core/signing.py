"""The Ed25519 key Lightbox signs receipts and manifests with."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings


@lru_cache(maxsize=1)
def private_key() -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(settings.SIGNING_KEY_FILE.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("SIGNING_KEY_FILE must hold an Ed25519 private key (PKCS#8 PEM)")
    return key


def public_key_pem() -> bytes:
    return private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

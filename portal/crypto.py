"""Field encryption for secrets at rest (TOTP seeds, export passphrases).

The keys live outside the database (``FIELD_ENCRYPTION_KEY`` or the embedded data dir), so a
database dump alone reveals nothing. ``MultiFernet`` lets an operator rotate keys: the first key
encrypts, every listed key decrypts.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt(plaintext: bytes) -> str:
    return _fernet().encrypt(plaintext).decode()


def decrypt(token: str) -> bytes:
    return _fernet().decrypt(token.encode())


def keyed_hash(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 of a high-entropy secret (recovery code, activation code, token).

    These secrets carry 50+ bits of entropy, so a keyed fast hash is enough; a slow password
    hash would only make each login check slower. The key is derived from the first field
    encryption key, which is not in the database, so a dump cannot be brute-forced offline.
    """
    key = hashlib.sha256(f"lightbox:{purpose}:".encode() + settings.FIELD_ENCRYPTION_KEYS[-1].encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

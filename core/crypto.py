"""Field encryption for secrets at rest (TOTP seeds, export passphrases).

The keys live outside the database (``FIELD_ENCRYPTION_KEY`` or the embedded data dir), so a
database dump alone reveals nothing. ``MultiFernet`` lets an operator rotate keys: the first key
encrypts, every listed key decrypts.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac


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
    hash would only make each check slower. The key is Django's ``SECRET_KEY`` (never in the
    database), so a dump cannot be brute-forced offline. It is deliberately not a field
    encryption key: those rotate (``FIELD_ENCRYPTION_KEY`` lists new keys first), and a rotation
    must not invalidate every stored hash. Rotating ``SECRET_KEY`` itself does, like sessions;
    patients then make new recovery codes and the hospital reissues unused activation codes.
    """
    return salted_hmac(f"lightbox.{purpose}", value, algorithm="sha256").hexdigest()

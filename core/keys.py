"""Key material for the embedded default, and loading of the production keys.

In production every key comes from the environment or a mounted file and the process refuses to
start without it. The embedded default (a laptop demo) generates its keys once under
``LIGHTBOX_DATA_DIR/keys`` so that nothing secret is ever committed to the repository.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two processes starting at once must not overwrite each other's fresh key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def embedded_secret(path: Path, kind: str) -> str:
    """Return the key stored at ``path``, creating it first if this is a fresh data dir."""
    if not path.exists():
        if kind == "fernet":
            data = Fernet.generate_key()
        elif kind == "ed25519":
            data = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            data = secrets.token_urlsafe(50).encode()
        _write_private(path, data)
    return path.read_text().strip()

"""Our WinZip AES-256 keystream (AES-ECB over counter blocks we lay out, exports/packaging.py)
against pycryptodome's own CTR mode with a little-endian counter, which pyzipper uses: same key
material, same bytes, whatever the chunking and however far the counter runs."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from Cryptodome.Cipher import AES
from Cryptodome.Util import Counter

from exports import packaging


def reference(material: bytes, data: bytes) -> tuple[bytes, bytes]:
    cipher = AES.new(material[:32], AES.MODE_CTR, counter=Counter.new(128, little_endian=True))
    ciphertext = cipher.encrypt(data)
    return ciphertext, hmac.new(material[32:64], ciphertext, hashlib.sha1).digest()


@pytest.mark.parametrize("chunks", [
    [1, 15, 17, 33, 300_000, 5],  # partial blocks carried from call to call
    [packaging.SEAL_PIECE * 3 + 7],  # one call of several pieces
    [16] * 40 + [packaging.SEAL_PIECE - 1, 2],
])
def test_streamed_encryption_matches_pycryptodome(chunks):
    salt, material = packaging._derive(b"orbit-lantern-velvet")
    data = os.urandom(sum(chunks))
    encrypter = packaging._Encrypter(salt, material)
    out, pos = b"", 0
    for n in chunks:
        out += bytes(encrypter.encrypt(data[pos:pos + n]))
        pos += n
    expected, mac = reference(material, data)
    assert out == expected
    assert encrypter.hmac.digest() == mac


def test_a_sealed_file_matches_pycryptodome(tmp_path, settings):
    """A file sealed whole by a helper thread, long enough for the counter's higher bits."""
    settings.STORAGES = {**settings.STORAGES, "dicom": {**settings.STORAGES["dicom"],
                                                        "OPTIONS": {"location": str(tmp_path)}}}
    data = os.urandom(packaging.SEAL_PIECE * 5 + 9)  # counters past 2**16
    (tmp_path / "f.dcm").write_bytes(data)
    loaded = packaging._seal("f.dcm", len(data), b"orbit-lantern-velvet", packaging._Slot(packaging._anonymous(1)))
    material = hashlib.pbkdf2_hmac("sha1", b"orbit-lantern-velvet", loaded.encrypter.salt, 1000, 66)
    expected, mac = reference(material, data)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest() and loaded.size == len(data)
    assert bytes(loaded.encrypter._ciphertext) == expected
    assert loaded.encrypter.flush() == mac[:10]


def test_counter_blocks_cross_the_table_runs():
    ecb_key = os.urandom(32)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    first = (1 << 14) - 3  # three blocks before a run boundary, then into the next run
    ecb = Cipher(algorithms.AES(ecb_key), modes.ECB()).encryptor()  # noqa: S305 - as the packager does
    stream = bytes(packaging._keystream(ecb, first, 16 * 8, packaging._Scratch()))
    plain = b"".join((first + i).to_bytes(16, "little") for i in range(8))
    direct = Cipher(algorithms.AES(ecb_key), modes.ECB()).encryptor().update(plain)  # noqa: S305
    assert stream == direct

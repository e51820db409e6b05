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
    """A file sealed by a helper thread and handed over in pieces through two reused buffers,
    long enough for the counter's higher bits."""
    import threading

    settings.STORAGES = {**settings.STORAGES, "dicom": {**settings.STORAGES["dicom"],
                                                        "OPTIONS": {"location": str(tmp_path)}}}
    data = os.urandom(packaging.SEAL_PIECE * 17 + 9)  # counters past 2**16
    (tmp_path / "f.dcm").write_bytes(data)
    stream = packaging._Stream([memoryview(packaging._anonymous(packaging.SEAL_PIECE)) for _ in range(2)],
                               threading.Event())
    helper = threading.Thread(target=packaging._seal, args=("f.dcm", b"orbit-lantern-velvet", stream))
    helper.start()
    kind, salt, material = stream.receive()
    assert kind == "key" and material == hashlib.pbkdf2_hmac("sha1", b"orbit-lantern-velvet", salt, 1000, 66)
    ciphertext = b""
    while (item := stream.receive())[0] == "piece":
        ciphertext += bytes(item[1])
        stream.give_back(item[2])
    helper.join()
    _, sha, length, mac = item
    expected, expected_mac = reference(material, data)
    assert (sha, length) == (hashlib.sha256(data).hexdigest(), len(data))
    assert ciphertext == expected and mac == expected_mac


def test_a_helper_waiting_for_a_buffer_gives_up_when_packaging_is_abandoned(tmp_path, settings):
    import threading

    settings.STORAGES = {**settings.STORAGES, "dicom": {**settings.STORAGES["dicom"],
                                                        "OPTIONS": {"location": str(tmp_path)}}}
    (tmp_path / "f.dcm").write_bytes(os.urandom(packaging.SEAL_PIECE * 3))
    abandon = threading.Event()
    stream = packaging._Stream([memoryview(packaging._anonymous(packaging.SEAL_PIECE))], abandon)
    helper = threading.Thread(target=packaging._seal, args=("f.dcm", b"pw", stream))
    helper.start()
    assert stream.receive()[0] == "key" and stream.receive()[0] == "piece"  # then it waits for the buffer
    abandon.set()
    helper.join(timeout=5)
    assert not helper.is_alive()


def test_a_helper_error_reaches_the_writer(tmp_path, settings):
    import threading

    settings.STORAGES = {**settings.STORAGES, "dicom": {**settings.STORAGES["dicom"],
                                                        "OPTIONS": {"location": str(tmp_path)}}}
    stream = packaging._Stream([memoryview(packaging._anonymous(packaging.SEAL_PIECE))], threading.Event())
    packaging._seal("missing.dcm", b"pw", stream)
    assert stream.receive()[0] == "key"
    with pytest.raises(FileNotFoundError):
        stream.receive()


def test_counter_blocks_cross_the_table_runs():
    ecb_key = os.urandom(32)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    first = (1 << 14) - 3  # three blocks before a run boundary, then into the next run
    ecb = Cipher(algorithms.AES(ecb_key), modes.ECB()).encryptor()  # noqa: S305 - as the packager does
    stream = bytes(packaging._keystream(ecb, first, 16 * 8, packaging._Scratch()))
    plain = b"".join((first + i).to_bytes(16, "little") for i in range(8))
    direct = Cipher(algorithms.AES(ecb_key), modes.ECB()).encryptor().update(plain)  # noqa: S305
    assert stream == direct


def test_buffers_kept_for_reuse_stay_within_the_budget():
    """Files of ever new sizes must not leave ever more buffers behind."""
    prefetch = packaging._Prefetch(b"pw")
    with prefetch:
        for i, size in enumerate(range(100_000, 3_000_000, 150_000)):
            row = packaging._File(pk=i, storage_path="missing.dcm", size=size, sha256="", series_id=1, study_id=1,
                                  number=i, sop_class="", sop_uid="", transfer_syntax="")
            assert prefetch.start(row)  # nothing else in flight: always started
            with pytest.raises(FileNotFoundError):
                _write_nothing(prefetch.take(row))
            prefetch.release(row)
            assert sum(len(b) for b in prefetch._free) <= packaging.AHEAD_BYTES


def _write_nothing(stream):
    while stream.receive()[0] != "end":
        pass

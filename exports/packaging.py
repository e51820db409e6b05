"""Streams a patient's studies into an AES-256 encrypted ZIP laid out like a patient CD (IHE PDI).

Used by the Celery job (``exports.services.export_package``) and by ``manage.py export_studies``.

- Encryption: WinZip AES-256 (AE-2) through pyzipper, never ZipCrypto. Entries are stored, not
  deflated: DICOM pixel data is mostly noise or already compressed, and deflate would cost far
  more CPU than it saves bytes.
- Memory stays flat: originals are read, hashed, keyed, encrypted and authenticated by two
  helper threads and handed to the writer in reusable buffers, small files whole and a few
  ahead (4 MiB at most), big ones 256 KiB at a time (``_Prefetch``); a de-identified file is
  rewritten one instance at a time, spooled to disk beyond 16 MiB. Packaging an original imports neither pydicom nor
  numpy nor Pillow (49 MB; the DICOMDIR is written by exports/dicomdir.py), so the worker stays
  small: benchmarks/export_memory.py measures 150 MB and 1.5 GB studies.
- Speed (benchmarks/export_throughput.py): one read of each file serves the manifest's SHA-256,
  the integrity check against ingest and the encryption; the work that dominates (PBKDF2, AES,
  HMAC-SHA1, SHA-256) runs in OpenSSL, which releases the GIL, so both cores share it while the
  archive itself is still written by one thread, in order, and synced to disk as it grows. No
  CRC-32 is computed: AE-2 entries store 0 in its place.
- Every entry has its own salt and key (PBKDF2), as WinZip AES requires: one key for two
  entries would reuse the CTR keystream.
- Nothing half-made is ever visible: the archive is written under a temporary name in the same
  directory and the caller publishes it with ``os.replace`` (atomic on one filesystem).
- Entry names are ours (``DICOM/ST0001/SE0001/IM000001``), never header values (docs/security.md §16).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import io
import mmap
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import pyzipper
from Cryptodome.Util.strxor import strxor
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from django.utils import timezone
from pyzipper.zipfile import _ZipWriteFile
from pyzipper.zipfile_aes import WZ_AES_V2, AESZipEncrypter, AESZipFile, AESZipInfo

from exports.dicomdir import Entry, entry_from_header, write_dicomdir
from exports.manifest import FileRecord, Manifest, readme, sign
from imaging.copies import CopyRecord
from imaging.models import Instance, Patient, PixelStatus, Series, Study
from imaging.storage import CHUNK, open_stored

# ZIP64 extra fields are needed past 2 GiB; deciding per entry keeps small files readable by
# the oldest unzip tools while huge multi-frame objects still work.
ZIP64_FROM = 2**31 - 1
SYNC_EVERY_SECONDS = 0.03
SEAL_PIECE = 128 * 1024  # keystream is made this much at a time (a multiple of 16)


class PackagingError(Exception):
    """A problem the patient can be told about in plain words (no patient data in the text)."""


class Cancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a progress callback to stop packaging (the patient cancelled)."""


@dataclass
class PixelReport:
    """Entry names of a de-identified archive's images, by what was done about text in pixels
    (the README and the export page list them). Originals are never read by OCR."""

    masked: list[str] = field(default_factory=list)  # OCR found text; it was masked in the copy
    not_checked: list[str] = field(default_factory=list)  # OCR could not read the image
    flagged: list[str] = field(default_factory=list)  # the scanner says "burned-in text", OCR found none

    def as_dict(self) -> dict[str, list[str]]:
        return {"masked": self.masked, "not_checked": self.not_checked, "flagged": self.flagged}


@dataclass(frozen=True)
class Result:
    size: int
    sha256: str
    file_count: int
    burned_in: list[str]
    pixel_text: PixelReport = field(default_factory=PixelReport)
    copies: list[CopyRecord] = field(default_factory=list)  # de-identified copies only


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class _File:
    """One stored file to package, with the few facts of its row that packaging needs. Model
    instances with their series and study cost about 5 KB each, 3.5 MB of the worker's peak for
    a 714-file study (benchmarks/export_memory.py); these cost a tenth of that."""

    pk: int
    storage_path: str
    size: int
    sha256: str
    series_id: int
    study_id: int
    number: int | None
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    rows: int | None = None
    pixel_status: str = "ok"


def instances_of(studies: Iterable[Study]) -> list[_File]:
    """Every instance of ``studies`` in archive order: study, series number, instance number."""
    ids = [s.pk for s in studies]
    rows = (
        Instance.objects.filter(series__study_id__in=ids)
        .order_by("series__study__study_date", "series__study_id", "series__number", "series_id", "number", "pk")
        .values_list("pk", "storage_path", "size", "sha256", "series_id", "series__study_id", "number", "sop_class",
                     "sop_uid", "transfer_syntax", "rows", "pixel_status")
    )
    return [_File(*row) for row in rows.iterator(chunk_size=2000)]


def temp_prefix(final: Path) -> str:
    return f".tmp-{final.name}-"


def build_archive(
    *,
    patient: Patient,
    studies: list[Study],
    deidentify: bool,
    passphrase: str,
    final_path: Path,
    on_progress: ProgressCallback | None = None,
    ocr: bool = True,
) -> tuple[Path, Result]:
    """Write the archive to a temporary file beside ``final_path`` and return (temp path, result).

    ``ocr=False`` skips reading pixels for text (every image is then listed as not checked);
    only benchmarks use it, to measure OCR's share of a de-identified export.

    The caller publishes it with ``os.replace(temp, final_path)`` once it knows it still owns
    the job; on any exception the temporary file is removed here.
    """
    instances = instances_of(studies)
    if not instances:
        raise PackagingError("The selected studies have no files to export.")
    final_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=final_path.parent, prefix=temp_prefix(final_path), suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    burned: list[str] = []
    pixel_text = PixelReport()
    copies: list[CopyRecord] = []
    try:
        with open(tmp, "wb") as raw:
            out = _HashingWriter(raw)
            try:
                _write(out, patient=patient, instances=instances, deidentify=deidentify, passphrase=passphrase,
                       on_progress=on_progress or (lambda done, total: None), burned=burned,
                       pixel_text=pixel_text, copies=copies, ocr=ocr)
            finally:
                sha = out.finish()
            raw.flush()
            os.fsync(raw.fileno())
        return tmp, Result(size=out.size, sha256=sha, file_count=len(instances), burned_in=burned,
                           pixel_text=pixel_text, copies=copies)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _HashingWriter:
    """Write-only, non-seekable view of the archive file that hashes every byte on the way out.

    Non-seekable on purpose: zipfile then writes sizes in data descriptors instead of seeking
    back into entries already written, so the SHA-256 of the archive is known the moment the
    last byte is written, without reading 1.5 GB back from disk. Hashing runs in the writing
    thread, without copying: hashlib releases the GIL, so the helper threads keep encrypting
    meanwhile, and a buffer is never hashed after it has been handed back for reuse.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        # The archive must be on disk before it is published (fsync), and the disk here takes
        # about as long to write 158 MB as we take to make them. A helper thread asks for the
        # data written so far to reach the disk every few hundredths of a second (fdatasync
        # waits without the GIL), so the disk works while we encrypt and the last fsync has
        # almost nothing left: 0.12 s less per 300-slice CT (benchmarks/export_throughput.py).
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_often, name="export-sync", daemon=True)
        self._syncer.start()

    def _sync_often(self) -> None:
        while not self._stop.wait(SYNC_EVERY_SECONDS):
            with contextlib.suppress(OSError, ValueError):  # the final fsync reports for real
                os.fdatasync(self._raw.fileno())

    def write(self, data: bytes | memoryview) -> int:
        self.size += len(data)
        self.digest.update(data)
        return self._raw.write(data)  # entries go straight to the OS: they exceed the 8 KiB buffer

    def tell(self) -> int:
        return self.size

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("not seekable")

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self._raw.flush()

    def finish(self) -> str:
        self._stop.set()
        self._syncer.join()
        return self.digest.hexdigest()


def _derive(pwd: bytes) -> tuple[bytes, bytes]:
    """A fresh 16-byte salt and the 66 bytes of key material WinZip AES-256 derives from it.

    ``cryptography``'s PBKDF2 (its own, newer OpenSSL) runs in about half the time of
    ``hashlib.pbkdf2_hmac`` here and scales across threads; the format fixes 1,000 rounds of
    HMAC-SHA1, and a new salt per entry is what keeps two entries off the same keystream.
    """
    salt = os.urandom(16)  # 256-bit AES: 16-byte salt
    kdf = PBKDF2HMAC(algorithm=hashes.SHA1(), length=2 * 32 + 2, salt=salt, iterations=1000)  # noqa: S303 - the format's KDF
    return salt, kdf.derive(pwd)


# WinZip's CTR counters are 128-bit little-endian integers, which OpenSSL's CTR mode (big-endian)
# cannot produce, so the keystream is AES-ECB over counter blocks we lay out ourselves. They
# are copied from a table of the counters 0 .. 2**14 - 1 (256 KiB, made once) with the higher
# bits XORed in: within one run of 2**14 counters the low 14 bits never carry into them.
# pycryptodome's strxor (already loaded by pyzipper) does the XOR in C without the GIL; numpy
# would cost the export worker 22 MB. Every buffer is allocated once per helper thread and
# reused, piece after piece: fresh 256 KiB buffers per piece made each thread's malloc arena
# grow by about a megabyte (benchmarks/export_memory.py).
_RUN = 1 << 14
_COUNTER_TABLE = memoryview(b"".join(i.to_bytes(16, "little") for i in range(_RUN)))


def _anonymous(size: int) -> mmap.mmap:
    """A buffer of its own pages, given back to the system when it is freed. Buffers of a few
    hundred KiB to a few MiB from malloc came from the heap once glibc had raised its mmap
    threshold, and stayed there: a worker's next export then peaked 4 MB higher
    (benchmarks/export_memory.py, "a real worker")."""
    return mmap.mmap(-1, size)


class _Scratch:
    """The reusable buffers for one piece of keystream: its counter blocks, a block repeated
    (the counters' higher bits), and the keystream, with the block of headroom OpenSSL wants."""

    def __init__(self) -> None:
        self.counters = memoryview(_anonymous(SEAL_PIECE))
        self.pattern = memoryview(_anonymous(SEAL_PIECE))
        self.stream = memoryview(_anonymous(SEAL_PIECE + 16))


def _repeat_into(view: memoryview, block: bytes) -> None:
    """Fill ``view`` with ``block`` over and over (doubling copies, no allocation)."""
    view[:16] = block
    filled = 16
    while filled < len(view):
        n = min(filled, len(view) - filled)
        view[filled:filled + n] = view[:n]
        filled += n


def _keystream(ecb: object, first_counter: int, length: int, scratch: _Scratch) -> memoryview:
    """``length`` (at most SEAL_PIECE) bytes of WinZip's CTR keystream from ``first_counter``,
    as a view of ``scratch.stream``, valid until the next call with the same scratch."""
    blocks = (length + 15) // 16
    pos, value, end = 0, first_counter, first_counter + blocks
    while value < end:
        high, low = divmod(value, _RUN)
        n = min(_RUN - low, end - value)
        dst = scratch.counters[pos * 16:(pos + n) * 16]
        dst[:] = _COUNTER_TABLE[low * 16:(low + n) * 16]
        if high:
            pattern = scratch.pattern[:n * 16]
            _repeat_into(pattern, (high << 14).to_bytes(16, "little"))
            strxor(dst, pattern, output=dst)
        pos, value = pos + n, value + n
    ecb.update_into(scratch.counters[:blocks * 16], scratch.stream)  # type: ignore[attr-defined]
    return scratch.stream[:length]


class _Encrypter(AESZipEncrypter):
    """WinZip AES-256 (AE-2), byte-for-byte what pyzipper's encrypter produces, but with the
    primitives of OpenSSL (via ``cryptography`` and ``hashlib``): AES in CTR mode with WinZip's
    little-endian counter, built from AES-ECB over the counter blocks; HMAC-SHA1; PBKDF2-SHA1
    with 1,000 rounds as the format requires. pycryptodome's CTR and HMAC run at about a
    third of this speed, which made packaging slower than 7-Zip (benchmarks/export_throughput.py).
    Used for entries streamed in chunks (big originals, de-identified files, DICOMDIR, ...).
    """

    def __init__(self, salt: bytes, material: bytes) -> None:
        self.force_wz_aes_version = WZ_AES_V2  # no CRC: AE-2, so the writer need not compute one
        self.conditionally_include_crc = None
        self.min_bytes_to_include_crc = None
        self.salt_length, self.aes_strength = 16, 3  # 256-bit keys
        self.salt = salt
        self.encpwdverify = material[64:]
        # ECB only encrypts the counter blocks: this is CTR mode, with WinZip's counter layout.
        self._ecb = Cipher(algorithms.AES(material[:32]), modes.ECB()).encryptor()  # noqa: S305
        self.hmac = hmac.new(material[32:64], digestmod=hashlib.sha1)
        self._counter = 1
        self._spare = b""  # keystream left over from the last call's final, partial block
        self._scratch = _Scratch()

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray(data)  # the ciphertext, encrypted in place
        view = memoryview(out)
        pos = min(len(out), len(self._spare))
        if pos:
            strxor(view[:pos], self._spare[:pos], output=view[:pos])
            self._spare = self._spare[pos:]
        while pos < len(out):
            n = min(SEAL_PIECE, len(out) - pos)
            stream = _keystream(self._ecb, self._counter, n, self._scratch)
            blocks = (n + 15) // 16
            self._counter += blocks
            self._spare = bytes(self._scratch.stream[n:blocks * 16])  # empty unless n % 16
            strxor(view[pos:pos + n], stream, output=view[pos:pos + n])
            pos += n
        self.hmac.update(out)
        return out  # type: ignore[return-value] - zipfile needs only len() and the buffer


class _Sealed(AESZipEncrypter):
    """An entry encrypted and authenticated by a helper thread (``_seal``): zipfile is handed
    the ciphertext piece by piece as if it were the plaintext (CTR keeps lengths), and the
    HMAC once the helper has finished."""

    def __init__(self, salt: bytes, material: bytes) -> None:
        self.force_wz_aes_version = WZ_AES_V2
        self.conditionally_include_crc = None
        self.min_bytes_to_include_crc = None
        self.salt_length, self.aes_strength = 16, 3
        self.salt = salt
        self.encpwdverify = material[64:]
        self.mac = b""

    def encrypt(self, data: bytes) -> bytes:
        return data  # already ciphertext

    def flush(self) -> bytes:
        if not self.mac:
            raise RuntimeError("a sealed entry was closed before its HMAC was known")
        return self.mac[:10]


class _AE2WriteFile(_ZipWriteFile):
    """zipfile's entry writer without the CRC-32: AE-2 entries store 0 instead (WinZip's
    recommendation: a CRC of the plaintext leaks information), so computing it is wasted work."""

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._zinfo.wz_aes_version != WZ_AES_V2:
            return super().write(data)
        nbytes = len(data)
        self._file_size += nbytes
        encrypted = self._encrypter.encrypt(data)
        self._compress_size += len(encrypted)
        self._fileobj.write(encrypted)
        return nbytes


class _ZipFile(AESZipFile):
    """pyzipper's AES ZIP writer with our encrypters. Each entry needs its own salt and a fresh
    PBKDF2 (reusing a key would reuse the CTR keystream)."""

    zipwritefile_cls = _AE2WriteFile
    _preset: AESZipEncrypter | None = None

    def preset_encrypter(self, encrypter: AESZipEncrypter) -> None:
        """Use ``encrypter`` (already keyed, maybe already done) for the next entry opened."""
        self._preset = encrypter

    def get_encrypter(self) -> AESZipEncrypter:
        if self._preset is not None:
            encrypter, self._preset = self._preset, None
            return encrypter
        return _Encrypter(*_derive(self.pwd))


# Originals are read, hashed, keyed, encrypted and authenticated by two helper threads, each on
# its own file, while the archive is written by one thread, in order: file reads, SHA-256,
# PBKDF2, AES, the XOR and HMAC all release the GIL, so both cores work. A helper hands its
# file to the writer through a queue, encrypted in place in reusable buffers: a file under
# WHOLE_MAX in one buffer, so it can be sealed whole ahead of its turn; a bigger one in
# FILE_PIECES buffers of BIG_PIECE that the writer hands back as it writes them, so its helper
# waits for the writer after its first 512 KiB. Files are started ahead while their buffers
# fit in AHEAD_BYTES, and at most two big ones at a time, so memory stays bounded whatever the
# size of the files or of the study: about 4 MiB for CT slices, 1 MiB for 2 MB slices
# (benchmarks/export_memory.py).
AHEAD_BYTES = 4 * 1024 * 1024
WHOLE_MAX = 1024 * 1024
BIG_PIECE = 256 * 1024
FILE_PIECES = 2
WORKERS = 2
_POLL_SECONDS = 0.2  # how often a waiting helper checks whether packaging was abandoned

_thread_scratch = threading.local()


class _Abandoned(Exception):  # noqa: N818 - a signal for the helper threads, never seen outside
    pass


class _Stream:
    """One original on its way from a helper thread to the writer: its key, then its pieces of
    ciphertext, then its SHA-256, length and HMAC (or the helper's exception)."""

    def __init__(self, buffers: list[memoryview], abandon: threading.Event, big: bool = False) -> None:
        self.buffers = buffers
        self.big = big
        self._abandon = abandon
        self._empty: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        for buf in buffers:
            self._empty.put(buf)

    # The helper's side.
    def empty_buffer(self) -> memoryview:
        while True:
            try:
                return self._empty.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._abandon.is_set():
                    raise _Abandoned from None

    def send(self, *item: object) -> None:
        self._full.put(item)

    # The writer's side.
    def receive(self) -> tuple:
        item = self._full.get()
        if item[0] == "error":
            raise item[1]
        return item

    def give_back(self, buf: memoryview) -> None:
        self._empty.put(buf)


def _seal(storage_path: str, pwd: bytes, stream: _Stream) -> None:
    """Seal one original into ``stream``: one read of the bytes gives the manifest's SHA-256
    (also the integrity check against ingest) and the entry's ciphertext and HMAC."""
    try:
        salt, material = _derive(pwd)
        stream.send("key", salt, material)
        ecb = Cipher(algorithms.AES(material[:32]), modes.ECB()).encryptor()  # noqa: S305 - CTR, see _Encrypter
        mac = hmac.new(material[32:64], digestmod=hashlib.sha1)
        sha = hashlib.sha256()
        scratch = getattr(_thread_scratch, "scratch", None) or _Scratch()
        _thread_scratch.scratch = scratch  # one per helper thread, kept for its next files
        counter, length = 1, 0
        with open_stored(storage_path) as fh:
            while True:
                buf = stream.empty_buffer()
                n = 0
                while n < len(buf) and (got := fh.readinto(buf[n:])):
                    n += got  # full pieces (multiples of 16) until the last: the counter just goes on
                if not n:
                    stream.give_back(buf)
                    break
                piece = buf[:n]
                sha.update(piece)
                for start in range(0, n, SEAL_PIECE):  # the keystream is made SEAL_PIECE at a time
                    part = piece[start:start + SEAL_PIECE]
                    strxor(part, _keystream(ecb, counter, len(part), scratch), output=part)
                    counter += (len(part) + 15) // 16
                mac.update(piece)
                length += n
                stream.send("piece", piece, buf)
                if n < len(buf):
                    break  # the file ended inside this buffer
        stream.send("end", sha.hexdigest(), length, mac.digest())
    except _Abandoned:
        pass
    except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
        stream.send("error", exc)


class _Prefetch:
    """Starts sealing the next originals in helper threads, in archive order, within the budget."""

    def __init__(self, pwd: bytes) -> None:
        self._pwd = pwd
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="export-seal")
        self._abandon = threading.Event()
        self._pending: dict[int, _Stream] = {}
        self._free: list[memoryview] = []  # piece buffers, reused from file to file
        self._reserved = 0  # bytes of buffers held by files in flight
        self._big = 0  # files in flight handed over in several pieces

    def start(self, inst: _File) -> bool:
        """Start sealing ``inst`` if its buffers fit the budget; False when it must wait."""
        # A file of up to WHOLE_MAX goes in one buffer, one byte longer than the file so that the
        # read ends inside it (and a file that grew shows); a bigger one gets FILE_PIECES.
        # Only two helpers seal at a time, so more than two big files in flight would only hold
        # buffers.
        big = inst.size >= WHOLE_MAX
        sizes = [BIG_PIECE] * FILE_PIECES if big else [inst.size + 1]
        if self._pending and (self._reserved + sum(sizes) > AHEAD_BYTES or (big and self._big >= WORKERS)):
            return False
        buffers = [self._buffer(size) for size in sizes]
        self._reserved += sum(len(b) for b in buffers)
        self._big += big
        stream = self._pending[inst.pk] = _Stream(buffers, self._abandon, big)
        self._pool.submit(_seal, inst.storage_path, self._pwd, stream)
        return True

    def take(self, inst: _File) -> _Stream:
        return self._pending[inst.pk]

    def release(self, inst: _File) -> None:
        """The entry is written (and hashed into the archive digest): its buffers may be reused."""
        stream = self._pending.pop(inst.pk)
        self._reserved -= sum(len(b) for b in stream.buffers)
        self._big -= stream.big
        self._free.extend(stream.buffers)
        # Files of ever new sizes would leave ever more buffers too small to reuse: keep at most
        # a budget's worth, the biggest (a dropped buffer's pages go back to the system).
        self._free.sort(key=len, reverse=True)
        while sum(len(b) for b in self._free) > AHEAD_BYTES and len(self._free) > 1:
            self._free.pop()

    def _buffer(self, size: int) -> memoryview:
        """A free buffer of at least ``size`` bytes (the smallest that fits), else a new one. All
        are whole blocks long, so that every piece but a file's last keeps the counter aligned."""
        size = -(-size // 16) * 16
        fits = [b for b in self._free if len(b) >= size]
        if not fits:
            return memoryview(_anonymous(size))
        best = min(fits, key=len)
        self._free.remove(best)
        return best

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._abandon.set()  # helpers waiting for a buffer give up; the others finish their file
        self._pool.shutdown(wait=True, cancel_futures=True)


def _write_sealed(zf: AESZipFile, zinfo: AESZipInfo, stream: _Stream, size: int) -> tuple[str, int]:
    """Write one sealed original as its entry, piece by piece as the helper hands them over."""
    _, salt, material = stream.receive()
    encrypter = _Sealed(salt, material)
    zf.preset_encrypter(encrypter)
    with zf.open(zinfo, "w", force_zip64=size >= ZIP64_FROM) as dst:
        while (item := stream.receive())[0] == "piece":
            dst.write(item[1])  # a view of the buffer, never copied
            stream.give_back(item[2])
        _, sha, length, encrypter.mac = item
    return sha, length


def _entries_from_rows(patient: Patient, files: list[_File], file_ids: list[tuple[str, ...]]) -> list[Entry]:
    """The DICOMDIR facts of an original: the ones ingest took from its header into our rows."""
    series_of = {s.pk: s for s in Series.objects.filter(pk__in={f.series_id for f in files})}
    study_of = {s.pk: s for s in Study.objects.filter(pk__in={f.study_id for f in files})}
    return [_entry(patient, f, series_of[f.series_id], study_of[f.study_id], file_id)
            for f, file_id in zip(files, file_ids, strict=True)]


def _entry(patient: Patient, inst: _File, series: Series, study: Study, file_id: tuple[str, ...]) -> Entry:
    return Entry(
        file_id=file_id, patient_id=patient.mrn, patient_name=patient.name, study_uid=study.study_uid,
        study_date=study.study_date.strftime("%Y%m%d") if study.study_date else "",
        study_time=study.study_time.strftime("%H%M%S") if study.study_time else "",
        study_description=study.description, study_id="", accession=study.accession,
        series_uid=series.series_uid, modality=series.modality or "OT", series_number=series.number,
        sop_class=inst.sop_class, sop_uid=inst.sop_uid, transfer_syntax=inst.transfer_syntax,
        instance_number=inst.number,
    )


def _zipinfo(name: str, when: dt.datetime) -> AESZipInfo:
    info = AESZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = pyzipper.ZIP_STORED
    info.external_attr = 0o640 << 16
    return info


def _copy_into(zf: AESZipFile, name: str, source: IO[bytes], size: int, when: dt.datetime) -> tuple[str, int]:
    digest, written = hashlib.sha256(), 0
    with zf.open(_zipinfo(name, when), "w", force_zip64=size >= ZIP64_FROM) as dst:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            written += len(chunk)
    return digest.hexdigest(), written


def _file_ids(instances: list[_File]) -> list[tuple[str, ...]]:
    """IHE PDI file IDs in archive order: ``DICOM/ST0001/SE0001/IM000001``, numbered by us."""
    study_no: dict[int, int] = {}
    series_no: dict[int, int] = {}
    series_in_study: dict[int, int] = {}
    image_no: dict[int, int] = {}
    ids = []
    for inst in instances:
        st = study_no.setdefault(inst.study_id, len(study_no) + 1)
        if inst.series_id not in series_no:
            series_in_study[st] = series_in_study.get(st, 0) + 1
            series_no[inst.series_id] = series_in_study[st]
        se = series_no[inst.series_id]
        im = image_no[inst.series_id] = image_no.get(inst.series_id, 0) + 1
        ids.append(("DICOM", f"ST{st:04d}", f"SE{se:04d}", f"IM{im:06d}"))
    return ids


def _face_series(instances: list[_File]) -> list[str]:
    """Folders (``DICOM/ST0001/SE0002``) of the head volumes a face can be rebuilt from."""
    from imaging.faces import face_series

    folders: dict[int, str] = {}
    for inst, file_id in zip(instances, _file_ids(instances), strict=True):
        folders.setdefault(inst.series_id, "/".join(file_id[:3]))
    heads = face_series(Series.objects.filter(pk__in=folders))
    return sorted(folders[s.pk] for s in heads)


def _options_described() -> list[str]:
    from imaging.dicom.deidentify import describe_options

    return [str(line) for line in describe_options()]


def _dicomdir_bytes(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    write_dicomdir(out, entries)
    return out.getvalue()


def _write(raw: _HashingWriter, *, patient: Patient, instances: list[_File], deidentify: bool, passphrase: str,
           on_progress: ProgressCallback, burned: list[str], pixel_text: PixelReport,
           copies: list[CopyRecord], ocr: bool = True) -> None:
    when = timezone.localtime()
    manifest = Manifest(
        created_at=timezone.now().isoformat(timespec="seconds"),
        created_for=(
            {"kind": "de-identified copy", "note": "This archive names no patient."}
            if deidentify
            else {"kind": "patient's own copy", "name": patient.name, "patient_id": patient.mrn, "issuer": patient.issuer}
        ),
        deidentified=deidentify,
        hospital=settings.HOSPITAL_NAME,
    )
    deidentifier = None
    if deidentify:
        # pydicom, numpy and the OCR binding are loaded only for a de-identified copy: an
        # original's archive needs none of them, and without them the export worker stays small.
        from imaging.dicom import deidentify as deid
        from imaging.pixel_text import BATCH, pixel_text_for_instances, regions_for_masking

        deidentifier = deid.Deidentifier()
    ocr_window: dict[int, Any] = {}
    file_ids = _file_ids(instances)
    total = len(instances)
    entries: list[Entry] = []
    ahead = 0  # instances[:ahead] have been handed to the helper threads
    with contextlib.ExitStack() as stack:
        prefetch = stack.enter_context(_Prefetch(passphrase.encode("utf-8")))

        def fill() -> None:
            nonlocal ahead
            while ahead < total and prefetch.start(instances[ahead]):
                ahead += 1

        if deidentifier is None:
            fill()  # sealing starts first: it is most of the work
            entries = _entries_from_rows(patient, instances, file_ids)
        zf = stack.enter_context(_ZipFile(raw, "w", compression=pyzipper.ZIP_STORED, encryption=pyzipper.WZ_AES))
        zf.setpassword(passphrase.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for done, (inst, file_id) in enumerate(zip(instances, file_ids, strict=True), start=1):
            name = "/".join(file_id)
            if deidentifier is None:
                fill()  # the writer's own file at least is always under way
                sha, size = _write_sealed(zf, _zipinfo(name, when), prefetch.take(inst), inst.size)
                prefetch.release(inst)
                if sha != inst.sha256:
                    # The stored file changed since ingest: never hand out a copy we cannot vouch for.
                    raise PackagingError("A stored file no longer matches its fingerprint; the privacy office has been told.")
                entry = entries[done - 1]
                is_burned = False  # flagged for de-identified copies only (README warning)
            else:
                regions: list[dict] = []
                checked = None
                if ocr and inst.rows and inst.pixel_status == PixelStatus.OK:
                    # Every image is read by OCR, whatever its header says. Results are cached
                    # per instance, and the next BATCH images are read together, so the frames
                    # of a CT series share Tesseract calls (48.8 s -> 24.3 s for 300 slices,
                    # benchmarks/deidentify_export.py); only BATCH results are held at a time.
                    if inst.pk not in ocr_window:
                        ocr_window.clear()
                        ahead_ids = [f.pk for f in instances[done - 1:]
                                     if f.rows and f.pixel_status == PixelStatus.OK][:BATCH]
                        ocr_window.update(pixel_text_for_instances(instances=Instance.objects.filter(pk__in=ahead_ids)))
                    checked = ocr_window[inst.pk]
                    regions = regions_for_masking(checked)
                try:
                    with open_stored(inst.storage_path) as fh:
                        out = deidentifier.deidentify(fh, text_regions=regions or None)
                except deid.DeidentificationFailed as exc:
                    raise PackagingError(f"Image {done} of {total} could not be de-identified: {exc.reason}.") from exc
                with out.file as spooled:
                    header = deid.header(spooled)
                    spooled.seek(0, io.SEEK_END)
                    length = spooled.tell()
                    spooled.seek(0)
                    sha, size = _copy_into(zf, name, spooled, length, when)
                if out.pixels_masked:
                    pixel_text.masked.append(name)
                elif inst.rows and (checked is None or checked.status == checked.Status.NOT_CHECKED):
                    pixel_text.not_checked.append(name)
                elif out.burned_in_annotation:
                    pixel_text.flagged.append(name)
                copies.append(CopyRecord(out.sop_uid, inst.pk, out.pixel_sha256, out.pixels_masked))
                # Flagged by the scanner and not cleaned by us: the README still warns about it.
                is_burned = out.burned_in_annotation and not out.pixels_masked
                entry = entry_from_header(header, file_id)
                entries.append(entry)
            if is_burned:
                burned.append(name)
            manifest.files.append(FileRecord(
                path=name, sha256=sha, size=size, study_uid=entry.study_uid, series_uid=entry.series_uid,
                sop_instance_uid=entry.sop_uid, modality=entry.modality, burned_in_annotation=is_burned,
            ))
            on_progress(done, total)

        dicomdir = _dicomdir_bytes(entries)  # 8 ms for 300 files (exports/dicomdir.py)
        readme_bytes = readme(deidentified=deidentify, burned_in=burned, site_url=settings.SITE_URL,
                              hospital=settings.HOSPITAL_NAME, pixel_text=pixel_text.as_dict(),
                              options=_options_described() if deidentify else [],
                              faces=_face_series(instances) if deidentify else [])
        for name, data in (("DICOMDIR", dicomdir), ("README.txt", readme_bytes)):
            zf.writestr(_zipinfo(name, when), data)
            manifest.files.append(FileRecord(path=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        manifest_bytes = manifest.as_json()
        zf.writestr(_zipinfo("MANIFEST.json", when), manifest_bytes)
        zf.writestr(_zipinfo("MANIFEST.sig", when), sign(manifest_bytes))

"""Streams a patient's studies into an AES-256 encrypted ZIP laid out like a patient CD (IHE PDI).

Used by the Celery job (``exports.services.export_package``) and by ``manage.py export_studies``.

- Encryption: WinZip AES-256 (AE-2) through pyzipper, never ZipCrypto. Entries are stored, not
  deflated: DICOM pixel data is mostly noise or already compressed, and deflate would cost far
  more CPU than it saves bytes.
- Memory stays flat: small originals (up to 4 MiB, e.g. CT slices) are read, hashed and
  encrypted by a helper thread one file ahead; bigger ones are copied into their entry in 1 MiB
  chunks, hashed on the way; a de-identified file is rewritten one instance at a time, spooled
  to disk beyond 16 MiB. benchmarks/export_memory.py: the same peak for 150 MB and 1.5 GB.
- Every entry has its own salt and key (PBKDF2), as WinZip AES requires: one key for two
  entries would reuse the CTR keystream.
- Nothing half-made is ever visible: the archive is written under a temporary name in the same
  directory and the caller publishes it with ``os.replace`` (atomic on one filesystem).
- Entry names are ours (``DICOM/ST0001/SE0001/IM000001``), never header values (SECURITY.md 16).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np
import pyzipper
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.utils import timezone
from pyzipper.zipfile_aes import AESZipEncrypter, AESZipFile, AESZipInfo

from exports.manifest import FileRecord, Manifest, readme, sign
from imaging.dicom import deidentify as deid
from imaging.dicom.dicomdir import Entry, entry_from_header, write_dicomdir
from imaging.models import Instance, Patient, Study
from imaging.storage import CHUNK, open_stored

# ZIP64 extra fields are needed past 2 GiB; deciding per entry keeps small files readable by
# the oldest unzip tools while huge multi-frame objects still work.
ZIP64_FROM = 2**31 - 1


class PackagingError(Exception):
    """A problem the patient can be told about in plain words (no patient data in the text)."""


class Cancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a progress callback to stop packaging (the patient cancelled)."""


@dataclass(frozen=True)
class Result:
    size: int
    sha256: str
    file_count: int
    burned_in: list[str]


ProgressCallback = Callable[[int, int], None]


def instances_of(studies: Iterable[Study]) -> list[Instance]:
    """Every instance of ``studies`` in archive order: study, series number, instance number."""
    ids = [s.pk for s in studies]
    return list(
        Instance.objects.filter(series__study_id__in=ids)
        .select_related("series", "series__study")
        .order_by("series__study__study_date", "series__study_id", "series__number", "series_id", "number", "pk")
    )


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
) -> tuple[Path, Result]:
    """Write the archive to a temporary file beside ``final_path`` and return (temp path, result).

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
    try:
        with open(tmp, "wb") as raw:
            out = _HashingWriter(raw)
            try:
                _write(out, patient=patient, instances=instances, deidentify=deidentify, passphrase=passphrase,
                       on_progress=on_progress or (lambda done, total: None), burned=burned)
            finally:
                sha = out.finish()
            raw.flush()
            os.fsync(raw.fileno())
        return tmp, Result(size=out.size, sha256=sha, file_count=len(instances), burned_in=burned)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _HashingWriter:
    """Write-only, non-seekable view of the archive file that hashes every byte on the way out.

    Non-seekable on purpose: zipfile then writes sizes in data descriptors instead of seeking
    back into entries already written, so the SHA-256 of the archive is known the moment the
    last byte is written, without reading 1.5 GB back from disk. Hashing runs in a helper
    thread (hashlib releases the GIL), with at most a few chunks in flight to bound memory.
    """

    MAX_PENDING = 4

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-hash")
        self._pending: list[Future] = []

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.size += len(data)
        self._pending.append(self._pool.submit(self.digest.update, data))
        if len(self._pending) > self.MAX_PENDING:
            self._pending.pop(0).result()
        return self._raw.write(data)

    def tell(self) -> int:
        return self.size

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("not seekable")

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self._raw.flush()

    def finish(self) -> str:
        for future in self._pending:
            future.result()
        self._pool.shutdown(wait=True)
        return self.digest.hexdigest()


class _Encrypter(AESZipEncrypter):
    """WinZip AES-256 (AE-2), byte-for-byte what pyzipper's encrypter produces, but with the
    primitives of OpenSSL (via ``cryptography`` and ``hashlib``): AES in CTR mode with WinZip's
    little-endian counter, built from AES-ECB over the counter blocks; HMAC-SHA1; PBKDF2-SHA1
    with 1,000 rounds as the format requires. pycryptodome's CTR and HMAC run at about a
    third of this speed, which made packaging slower than 7-Zip (benchmarks/export_throughput.py).
    """

    def __init__(self, salt: bytes, material: bytes) -> None:
        self.force_wz_aes_version = None
        self.conditionally_include_crc = None
        self.min_bytes_to_include_crc = None
        self.salt_length, self.aes_strength = 16, 3  # 256-bit keys
        self.salt = salt
        self.encpwdverify = material[64:]
        # ECB only encrypts the counter blocks: this is CTR mode, with WinZip's counter layout.
        self._ecb = Cipher(algorithms.AES(material[:32]), modes.ECB()).encryptor()  # noqa: S305
        self.hmac = hmac.new(material[32:64], digestmod=hashlib.sha1)
        self._counter = 1
        self._spare = b""

    def _keystream(self, n: int) -> bytes:
        stream = self._spare
        if n > len(stream):
            blocks = (n - len(stream) + 15) // 16
            counters = np.zeros((blocks, 2), dtype="<u8")  # 128-bit little-endian counters
            counters[:, 0] = np.arange(self._counter, self._counter + blocks, dtype=np.uint64)
            self._counter += blocks
            stream += self._ecb.update(counters.tobytes())
        self._spare = stream[n:]
        return stream[:n]

    def encrypt(self, data: bytes) -> bytes:
        if not data:
            return b""
        keystream = np.frombuffer(self._keystream(len(data)), dtype=np.uint8)
        encrypted = np.bitwise_xor(np.frombuffer(data, dtype=np.uint8), keystream).tobytes()
        self.hmac.update(encrypted)
        return encrypted


class _Precomputed(_Encrypter):
    """One entry encrypted ahead of time (in a helper thread); hands zipfile the ciphertext."""

    def __init__(self, salt: bytes, material: bytes, plaintext: bytes) -> None:
        super().__init__(salt, material)
        self._length = len(plaintext)
        self._ciphertext: bytes | None = super().encrypt(plaintext)

    def encrypt(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._ciphertext is None or len(data) != self._length:
            raise RuntimeError("a precomputed entry must be written in one piece")
        ciphertext, self._ciphertext = self._ciphertext, None
        return ciphertext


class _ZipFile(AESZipFile):
    """pyzipper's AES ZIP writer with our encrypter. Each entry needs its own salt and a fresh
    PBKDF2 (reusing a key would reuse the CTR keystream); the next entry's key is derived in a
    helper thread while the current one is written (PBKDF2 in hashlib releases the GIL)."""

    _keys: ThreadPoolExecutor | None = None
    _next_key: Future | None = None
    _preset: _Encrypter | None = None

    def preset_encrypter(self, encrypter: _Encrypter) -> None:
        """Use ``encrypter`` (already keyed, maybe already done) for the next entry opened."""
        self._preset = encrypter

    def get_encrypter(self) -> _Encrypter:
        if self._preset is not None:
            encrypter, self._preset = self._preset, None
            return encrypter
        if self._keys is None:
            self._keys = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-key")
            self._next_key = self._keys.submit(_derive, self.pwd)
        salt, material = self._next_key.result()
        self._next_key = self._keys.submit(_derive, self.pwd)
        return _Encrypter(salt, material)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._keys is not None:
                self._keys.shutdown(wait=True, cancel_futures=True)


def _derive(pwd: bytes) -> tuple[bytes, bytes]:
    salt = os.urandom(16)  # 256-bit AES: 16-byte salt
    return salt, hashlib.pbkdf2_hmac("sha1", pwd, salt, 1000, dklen=2 * 32 + 2)


# Files up to this size are read, hashed and encrypted whole by helper threads while earlier
# ones are written (file reads, SHA-256, PBKDF2, AES and HMAC all release the GIL). At most
# LOOKAHEAD + 1 such files are in memory at once, so a worker's memory stays flat.
PREFETCH_MAX = 4 * 1024 * 1024
LOOKAHEAD = 1


@dataclass
class _Loaded:
    sha256: str
    data: bytes
    encrypter: _Precomputed


def _load(storage_path: str, pwd: bytes) -> _Loaded:
    with open_stored(storage_path) as fh:
        data = fh.read()
    salt, material = _derive(pwd)
    return _Loaded(hashlib.sha256(data).hexdigest(), data, _Precomputed(salt, material, data))


class _Prefetch:
    """Loads and encrypts the next small originals in helper threads, in archive order."""

    def __init__(self, pwd: bytes) -> None:
        self._pwd = pwd
        self._pool = ThreadPoolExecutor(max_workers=LOOKAHEAD, thread_name_prefix="export-read")
        self._pending: dict[int, Future] = {}

    def start(self, inst: Instance) -> None:
        if inst.size <= PREFETCH_MAX and inst.pk not in self._pending:
            self._pending[inst.pk] = self._pool.submit(_load, inst.storage_path, self._pwd)

    def take(self, inst: Instance) -> _Loaded | None:
        future = self._pending.pop(inst.pk, None)
        return None if future is None else future.result()

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _entry_from_rows(patient: Patient, inst: Instance, file_id: tuple[str, ...]) -> Entry:
    series, study = inst.series, inst.series.study
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


def _write(raw: _HashingWriter, *, patient: Patient, instances: list[Instance], deidentify: bool, passphrase: str,
           on_progress: ProgressCallback, burned: list[str]) -> None:
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
    deidentifier = deid.Deidentifier() if deidentify else None
    entries: list[Entry] = []
    study_no: dict[int, int] = {}
    series_no: dict[int, int] = {}
    series_in_study: dict[int, int] = {}
    image_no: dict[int, int] = {}
    total = len(instances)
    prefetch = _Prefetch(passphrase.encode("utf-8"))
    if deidentifier is None:
        for ahead in instances[:LOOKAHEAD]:
            prefetch.start(ahead)
    with prefetch, _ZipFile(raw, "w", compression=pyzipper.ZIP_STORED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(passphrase.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for done, inst in enumerate(instances, start=1):
            series = inst.series
            st = study_no.setdefault(series.study_id, len(study_no) + 1)
            if series.pk not in series_no:
                series_in_study[st] = series_in_study.get(st, 0) + 1
                series_no[series.pk] = series_in_study[st]
            se = series_no[series.pk]
            im = image_no[series.pk] = image_no.get(series.pk, 0) + 1
            file_id = ("DICOM", f"ST{st:04d}", f"SE{se:04d}", f"IM{im:06d}")
            name = "/".join(file_id)
            if deidentifier is None:
                loaded = prefetch.take(inst)
                for ahead in instances[done:done + LOOKAHEAD]:
                    prefetch.start(ahead)
                if loaded is not None:
                    sha, size = loaded.sha256, len(loaded.data)
                    zf.preset_encrypter(loaded.encrypter)
                    with zf.open(_zipinfo(name, when), "w", force_zip64=size >= ZIP64_FROM) as dst:
                        dst.write(loaded.data)
                    del loaded
                else:
                    with open_stored(inst.storage_path) as fh:
                        sha, size = _copy_into(zf, name, fh, inst.size, when)
                if sha != inst.sha256:
                    # The stored file changed since ingest: never hand out a copy we cannot vouch for.
                    raise PackagingError("A stored file no longer matches its fingerprint; the privacy office has been told.")
                # The original's DICOMDIR facts are the ones ingest took from this very header.
                entry = _entry_from_rows(patient, inst, file_id)
                is_burned = False  # flagged for de-identified copies only (README warning)
            else:
                with open_stored(inst.storage_path) as fh:
                    out = deidentifier.deidentify(fh)
                with out.file as spooled:
                    header = deid.header(spooled)
                    spooled.seek(0, io.SEEK_END)
                    length = spooled.tell()
                    spooled.seek(0)
                    sha, size = _copy_into(zf, name, spooled, length, when)
                is_burned = out.burned_in_annotation
                entry = entry_from_header(header, file_id)
            entries.append(entry)
            if is_burned:
                burned.append(name)
            manifest.files.append(FileRecord(
                path=name, sha256=sha, size=size, study_uid=entry.study_uid, series_uid=entry.series_uid,
                sop_instance_uid=entry.sop_uid, modality=entry.modality, burned_in_annotation=is_burned,
            ))
            on_progress(done, total)

        dicomdir = io.BytesIO()
        write_dicomdir(dicomdir, entries)
        readme_bytes = readme(deidentified=deidentify, burned_in=burned, site_url=settings.SITE_URL,
                              hospital=settings.HOSPITAL_NAME)
        for name, data in (("DICOMDIR", dicomdir.getvalue()), ("README.txt", readme_bytes)):
            zf.writestr(_zipinfo(name, when), data)
            manifest.files.append(FileRecord(path=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        manifest_bytes = manifest.as_json()
        zf.writestr(_zipinfo("MANIFEST.json", when), manifest_bytes)
        zf.writestr(_zipinfo("MANIFEST.sig", when), sign(manifest_bytes))

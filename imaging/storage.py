"""Content-addressed storage for DICOM files and cached renders, through Django's storage API.

Object names are ours, derived from the SHA-256 of the bytes (``dicom/ab/cd/<sha256>.dcm``),
never from anything in a file's header or an archive's member names (docs/security.md §16). Because
a name is a function of the content, a second write of the same name is the same bytes, and
object storage (S3-compatible, via django-storages) works by changing ``STORAGES`` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.storage.handler import InvalidStorageError
from django.core.files.utils import validate_file_name

# 1 MiB chunks: large enough that hashing is disk-bound, small enough to stay out of memory.
CHUNK = 1024 * 1024
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage that writes to a temporary file and renames it into place.

    Readers (the viewer, the nightly re-hash) never see a half-written file, and two writers
    of the same content-addressed name both succeed with identical bytes instead of the second
    one being renamed to ``name_AbC123``.
    """

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        validate_file_name(name, allow_relative_path=True)
        return name

    def _make_dirs(self, directory: str) -> None:
        # Each new level gets the configured mode (os.makedirs applies it through the umask only).
        missing = []
        current = directory
        while not os.path.isdir(current) and current not in ("", os.path.dirname(current)):
            missing.append(current)
            current = os.path.dirname(current)
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            if self.directory_permissions_mode is not None:
                os.chmod(path, self.directory_permissions_mode)

    def _save(self, name: str, content: File) -> str:
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        self._make_dirs(directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                if hasattr(content, "chunks"):
                    for chunk in content.chunks():
                        out.write(chunk)
                else:
                    out.write(content.read())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, self.file_permissions_mode if self.file_permissions_mode is not None else 0o640)
            os.replace(tmp, full_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return str(name).replace("\\", "/")


def dicom_storage() -> Storage:
    return storages["dicom"]


def render_storage() -> Storage:
    try:
        return storages["renders"]
    except InvalidStorageError:  # a deployment may keep renders beside the DICOM objects
        return storages["dicom"]


def dicom_name(sha256: str) -> str:
    if not _SHA_RE.match(sha256):
        raise ValueError("not a SHA-256 hex digest")
    return f"dicom/{sha256[:2]}/{sha256[2:4]}/{sha256}.dcm"


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


def hash_stream(stream: BinaryIO) -> Digest:
    """SHA-256 and length of a stream, read in chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return Digest(digest.hexdigest(), size)


def hash_path(path: str | os.PathLike[str]) -> Digest:
    with open(path, "rb") as fh:
        return hash_stream(fh)


def store_file(path: str | os.PathLike[str], digest: Digest) -> str:
    """Put the file at ``path`` into DICOM storage under its content address; return the name.

    An existing object with that name is left untouched: it is either the same bytes or, if it
    was tampered with, evidence that the integrity check must still find.
    """
    storage = dicom_storage()
    name = dicom_name(digest.sha256)
    if storage.exists(name):
        return name
    with open(path, "rb") as fh:
        saved = storage.save(name, File(fh, name=Path(name).name))
    if saved != name:
        # A backend that renames on collision: the other object holds the same bytes.
        storage.delete(saved)
    return name


@dataclass(frozen=True)
class Incoming:
    """A file copied into the storage's own filesystem while it was hashed (``receive_file``),
    waiting under a temporary name for ``commit_incoming`` (or ``discard_incoming``)."""

    digest: Digest
    temp_path: str | None  # None: the backend is not a local filesystem; store from the source


def _incoming_dir(storage: Storage) -> str | None:
    try:
        root = storage.path(".incoming")
    except NotImplementedError:  # object storage: no local path
        return None
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def receive_file(path: str | os.PathLike[str]) -> Incoming:
    """Read the file at ``path`` once: copy it into storage under a temporary name (fsynced)
    while computing its SHA-256 and length. On a backend without local paths only the digest
    is computed here and ``commit_incoming`` stores from ``path`` (two reads, as before).

    Written by hand: shutil.copyfileobj cannot hash on the way, and reading the file twice
    (hash, then copy) was a quarter of the import's I/O."""
    storage = dicom_storage()
    root = _incoming_dir(storage)
    if root is None:
        return Incoming(hash_path(path), None)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Incoming(Digest(digest.hexdigest(), size), tmp)


def commit_incoming(incoming: Incoming, source: str | os.PathLike[str]) -> str:
    """Put a received file in place under its content address and return the name. As with
    ``store_file``, an existing object is left untouched (the temporary copy is removed)."""
    if incoming.temp_path is None:
        return store_file(source, incoming.digest)
    storage = dicom_storage()
    name = dicom_name(incoming.digest.sha256)
    full_path = storage.path(name)
    if os.path.exists(full_path):
        discard_incoming(incoming)
        return name
    if isinstance(storage, AtomicFileSystemStorage):
        storage._make_dirs(os.path.dirname(full_path))  # each level with the configured mode
    else:
        os.makedirs(os.path.dirname(full_path), exist_ok=True)
    mode = getattr(storage, "file_permissions_mode", None)
    os.chmod(incoming.temp_path, mode if mode is not None else 0o640)
    # Same filesystem: an atomic rename; two importers of the same bytes both end with one object.
    os.replace(incoming.temp_path, full_path)
    return name


def discard_incoming(incoming: Incoming) -> None:
    if incoming.temp_path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(incoming.temp_path)


def open_stored(name: str) -> BinaryIO:
    return dicom_storage().open(name, "rb")


def stored_digest(name: str) -> Digest | None:
    """Re-hash a stored object, streaming; None when it is missing."""
    storage = dicom_storage()
    try:
        with storage.open(name, "rb") as fh:
            return hash_stream(fh)
    except FileNotFoundError:
        return None

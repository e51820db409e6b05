"""Content-addressed storage for DICOM files and cached renders, through Django's storage API.

Object names are ours, derived from the SHA-256 of the bytes (``dicom/ab/cd/<sha256>.dcm``),
never from anything in a file's header or an archive's member names (docs/security.md §16). Because
a name is a function of the content, a second write of the same name is the same bytes, and
object storage (S3-compatible, via django-storages) works by changing ``STORAGES`` only.
"""

from __future__ import annotations

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

"""Finding the files an import should read: files, folders, ZIP archives (docs/security.md §16).

Used only by ``imaging.services.ingest.dicom_import``. Nothing here trusts a name that came from
outside: archive members are copied, under limits, into the run's own temporary directory with
names we choose (``m000001``); member names are only ever shown in the report. DICOMDIR
references are resolved inside the media root and never followed out of it.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imaging.dicom.parse import MAX_FILE_BYTES

# Zip-bomb limits. 100,000 members covers the largest real exams (a few thousand slices) many
# times over; 16 GiB of uncompressed content bounds the temporary disk one import can fill; a
# member expanding more than 200x (and past 16 MiB) is not a DICOM file, whose pixels compress
# 2-20x even with lossless codecs.
MAX_ARCHIVE_MEMBERS = 100_000
MAX_ARCHIVE_BYTES = 16 * 1024**3
MAX_RATIO = 200
RATIO_FLOOR = 16 * 1024**2
_CHUNK = 1024 * 1024
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Candidate:
    """A file to parse. ``label`` is what the report shows; ``path`` is where we read it."""

    label: str
    path: Path
    # For archive members: the member names of the same archive (to check DICOMDIR references).
    archive_names: frozenset[str] | None = None
    member_name: str | None = None


@dataclass(frozen=True)
class Refused:
    """Something that is not even a candidate (unsafe member name, zip bomb, unreadable)."""

    label: str
    reason: str


def printable(text: str) -> str:
    """A name from a file system or an archive, safe to print on a terminal."""
    return _CONTROL_RE.sub("?", text)


def is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    # A DICOM file whose preamble starts with "PK" is still a DICOM file (or a polyglot that
    # the parser refuses); only a file without the DICM marker is treated as an archive.
    return head[:4] == b"PK\x03\x04" and head[128:132] != b"DICM"


def walk(root: Path) -> Iterator[Candidate | Refused]:
    """Every regular file under ``root``, sorted, without following symbolic links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            label = printable(str(path))
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                yield Refused(label, f"Cannot read the file ({exc.strerror or exc}).")
                continue
            if stat.S_ISLNK(mode):
                yield Refused(label, "Symbolic link not followed.")
            elif stat.S_ISREG(mode):
                yield Candidate(label, path)


def _unsafe_member(name: str) -> bool:
    if "\x00" in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(part == ".." for part in parts)


def open_archive(path: Path, label: str, workdir: Path) -> Iterator[Candidate | Refused]:
    """Copy each member of the ZIP at ``path`` into ``workdir`` under a name of ours."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield Refused(label, f"Not a readable ZIP archive ({exc}).")
        return
    with archive:
        # ZipInfo.is_dir() raises IndexError on an empty member name (found by the import fuzz).
        members = [info for info in archive.infolist() if not info.filename.endswith("/")]
        if len(members) > MAX_ARCHIVE_MEMBERS:
            yield Refused(label, f"The archive has too many members ({len(members)}).")
            return
        names = frozenset(m.filename.replace("\\", "/").lower() for m in members)
        total = 0
        for index, info in enumerate(members, start=1):
            member_label = f"{label}!{printable(info.filename)}"
            if _unsafe_member(info.filename):
                yield Refused(member_label, "Unsafe archive member name (absolute path or '..'); not read.")
                continue
            if info.flag_bits & 0x1:
                yield Refused(member_label, "Encrypted archive member; not read.")
                continue
            if info.file_size > MAX_FILE_BYTES:
                yield Refused(member_label, "Archive member is too large.")
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
                yield Refused(member_label, f"Archive member expands {ratio:.0f} times (zip bomb); not read.")
                continue
            if total + info.file_size > MAX_ARCHIVE_BYTES:
                yield Refused(member_label, "The archive expands beyond the import limit; the rest is not read.")
                return
            target = workdir / f"m{index:06d}"
            try:
                written = _copy_member(archive, info, target)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as exc:
                target.unlink(missing_ok=True)
                yield Refused(member_label, f"Archive member cannot be read ({exc}).")
                continue
            total += written
            yield Candidate(member_label, target, archive_names=names, member_name=info.filename.replace("\\", "/"))


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> int:
    # The size in the header can lie; count what actually comes out and stop at the limit.
    limit = min(info.file_size, MAX_FILE_BYTES)
    written = 0
    with archive.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise ValueError("member is larger than its header says")
            out.write(chunk)
    return written


def resolve_dicomdir(dicomdir: Candidate, referenced: list[tuple[str, ...]]) -> Iterator[Candidate | Refused]:
    """The files a DICOMDIR lists, resolved safely inside its media root.

    For a DICOMDIR inside an archive, the members are imported anyway; only references to
    members that are not there are reported.
    """
    if dicomdir.archive_names is not None:
        base = PurePosixPath(dicomdir.member_name or "").parent
        for parts in referenced:
            if not _safe_parts(parts):
                yield Refused(f"{dicomdir.label} -> {printable('/'.join(parts))}", "Unsafe DICOMDIR reference; not followed.")
                continue
            if str(base.joinpath(*parts)).lower() not in dicomdir.archive_names:
                yield Refused(f"{dicomdir.label} -> {printable('/'.join(parts))}", "Listed in the DICOMDIR but missing.")
        return

    root = dicomdir.path.parent.resolve()
    for parts in referenced:
        label = printable(str(dicomdir.path.parent.joinpath(*parts))) if _safe_parts(parts) else printable("/".join(parts))
        if not _safe_parts(parts):
            yield Refused(label, "Unsafe DICOMDIR reference (absolute path or '..'); not followed.")
            continue
        found = _find_case_insensitive(root, parts)
        if found is None:
            yield Refused(label, "Listed in the DICOMDIR but missing from the media.")
            continue
        real = found.resolve()
        if not real.is_relative_to(root):
            yield Refused(label, "DICOMDIR reference points outside the media; not followed.")
            continue
        yield Candidate(printable(str(found)), real)


def _safe_parts(parts: tuple[str, ...]) -> bool:
    return bool(parts) and all(
        p and p not in (".", "..") and "/" not in p and "\\" not in p and "\x00" not in p and ":" not in p for p in parts
    )


def _find_case_insensitive(root: Path, parts: tuple[str, ...]) -> Path | None:
    """File IDs are upper case on the media, but CD mounts often present them in lower case."""
    current = root
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            match = next((entry for entry in os.listdir(current) if entry.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = current / match
    return current if current.is_file() else None

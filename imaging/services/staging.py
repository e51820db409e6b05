"""Pass 1 of ``dicom_import`` for one file: parse the header, copy into the run's
``.incoming`` folder while hashing, check that the first frame decodes. No database access, so it
runs in worker processes.

``prepare`` is what a worker runs; ``prepare_all`` runs it over many files, in a pool of
processes for big runs (one per core) and in this process for small ones, results in order.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError

from imaging import storage
from imaging.models import Instance, PixelStatus

if TYPE_CHECKING:
    from imaging.dicom import parse

PIXEL_ERROR_CHARS = Instance._meta.get_field("pixel_error").max_length
# Below this many files a pool costs more (starting the workers, about 50 ms each) than it saves;
# a 300-slice CT takes about 3 s in one process.
POOL_MIN_FILES = 64
# Files up to this size are read into memory whole (one read for parsing, hashing, copying and
# the decode check); bigger ones are streamed. A worker holds one such file at a time.
IN_MEMORY_BYTES = 64 * 1024**2
PR_SET_PDEATHSIG = 1  # prctl(2), linux/prctl.h
# Threads fsyncing the copies as they arrive (fsync waits on the disk, not the CPU).
SYNC_THREADS = 2
# Files handed to a worker at a time: few enough round trips, small enough that both cores
# finish together.
POOL_CHUNK = 16


@dataclass(frozen=True)
class Prepared:
    """One file after pass 1: exactly one of ``reason`` (rejected), ``referenced`` (a DICOMDIR)
    or ``parsed`` + ``incoming`` (an instance ready for pass 2)."""

    reason: str | None = None
    referenced: list[tuple[str, ...]] | None = None
    parsed: parse.ParsedInstance | None = None
    incoming: storage.Incoming | None = None
    pixel_status: str = PixelStatus.OK
    pixel_error: str = ""
    row_valid: bool = False  # the Instance row passed full_clean here (pass 2 need not repeat it)


def prepare(path: Path, run: storage.IncomingRun) -> Prepared:
    """Pass 1 for one file. A file up to ``IN_MEMORY_BYTES`` is read once: parsed, hashed,
    copied into ``run``'s folder and decode-checked from the same bytes and the same parsed
    dataset (it was opened four times and its header parsed three times). Raises
    ``storage.StorageWriteError`` when the copy cannot be written: the import stops."""
    from imaging.dicom import parse, render

    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= IN_MEMORY_BYTES else None
    except OSError as exc:
        return Prepared(reason=f"Cannot read the file ({exc.strerror or exc}).")
    if data is None:
        return _prepare_streamed(path, run)
    try:
        parsed, header = parse.parse_buffer(data)
    except parse.DicomRejected as exc:
        return Prepared(reason=exc.reason)
    if isinstance(parsed, parse.DicomDirIndex):
        return Prepared(referenced=parsed.referenced)
    incoming = storage.receive_bytes(data, run, path)
    status, error = PixelStatus.NONE, ""
    if parsed.is_image:
        # Decoding can take a while: done here, before any transaction. A file whose bytes are
        # already stored keeps the status found when it was first imported (pass 2 looks it up).
        # Plain uncompressed monochrome data (a CT or MR slice) is certain to decode from its
        # header alone (limits.plain_monochrome): not decoded, a tenth of the file's CPU.
        plain = parse.plain_monochrome(header, max_frame_pixels=render.MAX_RENDER_PIXELS)
        problem = None if plain else render.header_decode_problem(header, parsed.viewer)
        status, error = (PixelStatus.OK, "") if problem is None else (PixelStatus.UNDECODABLE, problem[:PIXEL_ERROR_CHARS])
    return Prepared(parsed=parsed, incoming=incoming, pixel_status=status, pixel_error=error,
                    row_valid=_row_valid(parsed, incoming.digest, status, error))


def instance_row(parsed: parse.ParsedInstance, digest: storage.Digest, status: str, error: str) -> Instance:
    """The unsaved Instance row for a file (no series yet): built here and in pass 2 alike."""
    p = parsed
    return Instance(
        sop_uid=p.sop_uid, sop_class=p.sop_class, transfer_syntax=p.transfer_syntax,
        number=p.instance_number, frames=p.frames, rows=p.rows, columns=p.columns, size=digest.size,
        sha256=digest.sha256, storage_path=storage.dicom_name(digest.sha256), meta=p.viewer,
        pixel_status=status, pixel_error=error,
    )


def _row_valid(parsed: parse.ParsedInstance, digest: storage.Digest, status: str, error: str) -> bool:
    """Validate the file's row in the worker (full_clean was a third of the study's serial
    commit for a 3,000-slice CT). No database access: Instance has no constraint that queries
    (unique sop_uid is left to pass 2 and the database). Pass 2 validates again when this says
    no, to give the reason."""
    try:
        instance_row(parsed, digest, status, error).full_clean(validate_unique=False, validate_constraints=False,
                                                               exclude=["series"])
    except ValidationError:
        return False
    return True


def _prepare_streamed(path: Path, run: storage.IncomingRun) -> Prepared:
    """``prepare`` for a file too big to hold in memory: parsed with its pixel data left on disk,
    copied in chunks, its first frame read from the file."""
    from imaging.dicom import parse, render

    try:
        parsed = parse.parse_file(path)
    except parse.DicomRejected as exc:
        return Prepared(reason=exc.reason)
    if isinstance(parsed, parse.DicomDirIndex):
        return Prepared(referenced=parsed.referenced)
    try:
        incoming = storage.receive_file(path, run)
    except OSError as exc:  # reading the source; a write failure is StorageWriteError
        return Prepared(reason=f"Cannot read the file ({exc.strerror or exc}).")
    status, error = PixelStatus.NONE, ""
    if parsed.is_image:
        problem = render.decode_problem(path)
        status, error = (PixelStatus.OK, "") if problem is None else (PixelStatus.UNDECODABLE, problem[:PIXEL_ERROR_CHARS])
    return Prepared(parsed=parsed, incoming=incoming, pixel_status=status, pixel_error=error)


def workers_for(count: int) -> int:
    if count < POOL_MIN_FILES or multiprocessing.current_process().daemon:
        # A Celery prefork child (the PACS sync) is daemonic and may not start processes.
        return 1
    # One per core: with the copies synced in batches (storage.commit_incoming_all) a worker no
    # longer waits on each file's fsync, and a third worker on two cores only competes
    # (earlier, one more than cores filled the fsync waits: 1,000 slices in 11-13 s against 17 s).
    return max(1, min(os.cpu_count() or 1, count // POOL_MIN_FILES))


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the worker is killed when the import that forked it dies, SIGKILL
    included. Otherwise it sleeps on the pool's queue for good, holding the run's ``.incoming``
    lock, and the run's folder is never swept (seen with ``import_dicom`` killed mid-run)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the import died before the line above
        os._exit(1)


def prepare_all(paths: list[Path], run: storage.IncomingRun) -> Iterator[Prepared]:
    """``prepare`` for every path, in order. Workers are forked (they inherit Django's settings
    and never touch the database, whose connection stays the parent's).

    Every copy returned is synced (fsync) by the time the iteration ends: threads here fsync
    each copy as its result arrives, while the workers go on parsing, so neither a worker nor
    the study's commit waits on the disk file by file (``storage.commit_incoming_all(...,
    synced=True)``). A ``StorageWriteError`` from any file stops the whole pass: files not yet
    started are cancelled."""
    work = functools.partial(prepare, run=run)
    workers = workers_for(len(paths))
    syncing: list[tuple[Path, Future[None]]] = []
    with ThreadPoolExecutor(max_workers=SYNC_THREADS) as syncer:
        try:
            for path, prepared in zip(paths, _prepare_each(work, paths, workers), strict=True):
                if prepared.incoming is not None and prepared.incoming.temp_path is not None:
                    syncing.append((path, syncer.submit(storage.sync_incoming, prepared.incoming, path)))
                yield prepared
            for _, future in syncing:
                future.result()  # raises the first StorageWriteError
        finally:
            for _, future in syncing:
                future.cancel()


def _prepare_each(work: Callable[[Path], Prepared], paths: list[Path], workers: int) -> Iterator[Prepared]:
    if workers == 1:
        yield from map(work, paths)
        return
    # Imported once here, before the fork, rather than once in each worker (pydicom, numpy and
    # the decoders are about 0.4 s of CPU to import).
    from imaging.dicom import parse, render  # noqa: F401

    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with_parent,
                               initargs=(os.getpid(),))
    try:
        yield from pool.map(work, paths, chunksize=POOL_CHUNK)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

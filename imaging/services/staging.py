"""Pass 1 of ``dicom_import`` for one file: parse the header, copy into storage while hashing,
check that the first frame decodes. No database access, so it runs in worker processes.

``prepare`` is what a worker runs; ``prepare_all`` runs it over many files, in a pool of
processes for big runs (one per core) and in this process for small ones, results in order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imaging import storage
from imaging.models import Instance, PixelStatus

if TYPE_CHECKING:
    from imaging.dicom import parse

PIXEL_ERROR_CHARS = Instance._meta.get_field("pixel_error").max_length
# Below this many files a pool costs more (starting the workers, about 50 ms each) than it saves;
# a 300-slice CT takes about 3 s in one process.
POOL_MIN_FILES = 64
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


def prepare(path: Path) -> Prepared:
    from imaging.dicom import parse

    try:
        parsed = parse.parse_file(path)
    except parse.DicomRejected as exc:
        return Prepared(reason=exc.reason)
    if isinstance(parsed, parse.DicomDirIndex):
        return Prepared(referenced=parsed.referenced)
    try:
        incoming = storage.receive_file(path)
    except OSError as exc:
        return Prepared(reason=f"Cannot read the file ({exc.strerror or exc}).")
    status, error = PixelStatus.NONE, ""
    if parsed.is_image:
        from imaging.dicom import render

        # Decoding can take a while: done here, before any transaction. A file whose bytes are
        # already stored keeps the status found when it was first imported (pass 2 looks it up).
        problem = render.decode_problem(path)
        status, error = (PixelStatus.OK, "") if problem is None else (PixelStatus.UNDECODABLE, problem[:PIXEL_ERROR_CHARS])
    return Prepared(parsed=parsed, incoming=incoming, pixel_status=status, pixel_error=error)


def workers_for(count: int) -> int:
    if count < POOL_MIN_FILES or multiprocessing.current_process().daemon:
        # A Celery prefork child (the PACS sync) is daemonic and may not start processes.
        return 1
    # One more worker than cores: each file's fsync leaves its worker waiting (about 3 of its
    # 14 ms here), and a third worker fills that time (1,000 CT slices on 2 cores: 17 s with
    # 2 workers, 11-13 s with 3, 15 s with 4).
    return max(1, min((os.cpu_count() or 1) + 1, count // POOL_MIN_FILES))


def prepare_all(paths: list[Path]) -> Iterator[Prepared]:
    """``prepare`` for every path, in order. Workers are forked (they inherit Django's settings
    and never touch the database, whose connection stays the parent's)."""
    workers = workers_for(len(paths))
    if workers == 1:
        yield from map(prepare, paths)
        return
    # Imported once here, before the fork, rather than once in each worker (pydicom, numpy and
    # the decoders are about 0.4 s of CPU to import).
    from imaging.dicom import parse, render  # noqa: F401

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(prepare, paths, chunksize=POOL_CHUNK)

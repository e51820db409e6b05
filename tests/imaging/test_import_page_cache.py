"""An import leaves no copy of its files in the page cache (issue 18, the import's speed).

A 3,000-slice CT wrote 1.6 GB into the page cache and kept it there: memory a hospital's
database and pages need, and on the project's VM a fault in the host for each fresh page (23% of
the import's samples in perf). Each copy's pages are now dropped once it is fsynced
(``storage.sync_incoming``). Residency is read with mincore(2) on a mapping of each stored file
that is never touched (mapping does not read the file).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from imaging.models import Instance
from imaging.services.ingest import dicom_import
from tests.imaging.helpers import importer
from tests.imaging.test_import_batches import write_study

pytestmark = pytest.mark.django_db

# mmap(2), mincore(2) and munmap(2) from the C library (the suite runs on Linux, as production does).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
PROT_READ, MAP_SHARED = 1, 1


def cached_pages(path: Path) -> int:
    """How many of ``path``'s pages are in the page cache."""
    size = path.stat().st_size
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vector = ctypes.create_string_buffer((size + page - 1) // page)
            assert _libc.mincore(address, size, vector) == 0, os.strerror(ctypes.get_errno())
            return sum(byte & 1 for byte in vector.raw)
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)


def test_imported_copies_are_not_left_in_the_page_cache(inputs, dicom_storage):
    sources = write_study(inputs, 4)
    assert all(cached_pages(p) > 0 for p in sources)  # just written: the check can see cached pages

    summary = dicom_import(actor=importer(), paths=[inputs])

    assert summary.imported == 4
    stored = [dicom_storage / i.storage_path for i in Instance.objects.all()]
    assert len(stored) == 4
    assert [cached_pages(p) for p in stored] == [0, 0, 0, 0]

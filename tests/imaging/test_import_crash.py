"""A killed import (SIGKILL mid-run) leaves its copies in its own ``.incoming/run-*`` folder; the
next import's sweep removes them, and never the folder of an import that is still running
(issue 18)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imaging import storage
from imaging.dicom import synth
from imaging.models import Instance
from imaging.services import staging
from imaging.services.ingest import dicom_import
from tests.imaging.helpers import importer
from tests.imaging.test_import_batches import ROOT, _url_of_test_database, incoming_left, write_study

pytestmark = pytest.mark.django_db


def run_folders(stored: Path) -> list[Path]:
    return sorted(p for p in (stored / ".incoming").iterdir() if p.is_dir())


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (its import workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def wait_until_unlocked(lock_file: Path, timeout: float = 60) -> bool:
    """Whether every process holding the run's lock (the killed import and its workers) is gone
    within ``timeout``: a blocking flock in a thread, joined with a deadline."""
    fd = os.open(lock_file, os.O_RDWR)
    thread = threading.Thread(target=fcntl.flock, args=(fd, fcntl.LOCK_EX), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False
    os.close(fd)  # releases it again for the sweep
    return True


@pytest.mark.parametrize("count", [5, 2 * staging.POOL_MIN_FILES], ids=["in-process", "worker-processes"])
def test_a_killed_import_leaves_copies_that_the_next_import_removes_but_never_a_running_ones(tmp_path, count):
    # The child's storage is LIGHTBOX_DATA_DIR/storage: the same folder as this test's own
    # (conftest's dicom_storage is tmp_path/"storage").
    stored = tmp_path / "storage"
    inputs = tmp_path / "inputs"
    write_study(inputs, count)  # 2 x POOL_MIN_FILES: two worker processes make the copies
    # A named pipe given after the folder: the import stops on it, reading, once the files
    # before it are copied, and this test knows the moment without waiting on a clock.
    fifo = tmp_path / "zz-pipe.dcm"
    os.mkfifo(fifo)
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp_path), "DATABASE_URL": _url_of_test_database()}
    child = subprocess.Popen([sys.executable, "manage.py", "import_dicom", str(inputs), str(fifo)],  # noqa: S603
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with open(fifo, "wb", buffering=0) as probe, pytest.raises(BrokenPipeError):
            # The import's look for a ZIP reads the first bytes (not a ZIP) and closes the pipe;
            # writing on until the pipe breaks tells when it has let go.
            while True:
                probe.write(bytes(4096))
        writer = open(fifo, "wb")  # noqa: SIM115 - returns once pass 1 opens the pipe to read it
        (folder,) = run_folders(stored)
        copies = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
        assert copies, "the files before the pipe were copied into the run's folder"

        # The import is alive: a sweep (another import starting) leaves its folder alone.
        assert storage.purge_incoming() == 0
        assert all(p.exists() for p in copies)

        workers = _children(child.pid)
        assert len(workers) == (staging.workers_for(count) if count >= staging.POOL_MIN_FILES else 0)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        writer.close()
        # The lock is free once the import and its worker processes (which share it) are gone:
        # the workers die with it (they slept on the pool's queue for good, holding it).
        assert wait_until_unlocked(Path(f"{folder}.lock")), "a worker of the killed import is still alive"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in locals().get("workers", []):  # a failed run leaves no orphan behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not Instance.objects.exists()

    # The next import removes what the killed one left and imports normally.
    other = synth.write_instance(tmp_path / "other" / "one.dcm", patient_id="NEXT1")
    summary = dicom_import(actor=importer(), paths=[other])
    assert summary.imported == 1
    assert not folder.exists()
    assert incoming_left(stored) == []


def test_the_sweep_removes_only_dead_runs_and_old_loose_copies(dicom_storage):
    alive = storage.IncomingRun()
    (Path(alive.path) / ".tmp-alive").write_bytes(b"x")
    root = dicom_storage / ".incoming"
    # A run whose owner died: its folder and lock file, nobody holding the lock.
    (root / "run-dead").mkdir()
    (root / "run-dead" / ".tmp-dead").write_bytes(b"x")
    (root / "run-dead.lock").write_bytes(b"")
    # A folder whose lock file is already gone (a sweep cut short), and loose copies of a version
    # before run folders: one old enough to be abandoned, one that may still be written.
    (root / "run-orphan").mkdir()
    old, recent = root / ".tmp-old", root / ".tmp-recent"
    old.write_bytes(b"x")
    recent.write_bytes(b"x")
    long_ago = old.stat().st_mtime - storage.LOOSE_TEMP_MAX_AGE_S - 60
    os.utime(old, (long_ago, long_ago))

    assert storage.purge_incoming() == 3
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [Path(alive.path).name, f"{Path(alive.path).name}.lock", ".tmp-recent"]
    )
    assert (Path(alive.path) / ".tmp-alive").exists()
    alive.close()
    assert sorted(p.name for p in root.iterdir()) == [".tmp-recent"]


def test_the_nightly_integrity_task_sweeps_too(dicom_storage):
    """A killed import's folder does not wait for the next import: the nightly task removes it."""
    from imaging.tasks import verify_integrity

    root = dicom_storage / ".incoming"
    root.mkdir(parents=True)
    (root / "run-dead").mkdir()
    (root / "run-dead" / ".tmp-dead").write_bytes(b"x")
    (root / "run-dead.lock").write_bytes(b"")
    verify_integrity()
    assert list(root.iterdir()) == []

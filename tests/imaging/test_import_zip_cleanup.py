"""A ZIP given to the import is unpacked inside the run's own ``.incoming/run-*`` folder
(``storage.unpack_folder``), so a killed import's unpacked members are swept with its copies by
the next import, instead of staying in /tmp for good (a ``TemporaryDirectory`` is not removed
when its process is killed). Path-traversal members and zip bombs are still refused there."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from imaging import storage
from imaging.dicom import synth
from imaging.models import Instance
from imaging.services.ingest import dicom_import
from tests.imaging.helpers import importer
from tests.imaging.test_import_batches import ROOT, ObjectStorage, _url_of_test_database, incoming_left, write_study
from tests.imaging.test_import_crash import _children, run_folders, wait_until_unlocked

pytestmark = pytest.mark.django_db


def write_zip(target: Path, files: list[Path]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, f"EXAM/{f.name}")
    return target


def unpacked_members(root: Path) -> list[Path]:
    """Members the import unpacked (``sources.open_archive`` names them m000001, ...)."""
    return sorted(p for p in root.rglob("m0*") if p.is_file())


def test_a_killed_import_of_a_zip_leaves_its_unpacked_members_to_the_next_imports_sweep(tmp_path):
    stored = tmp_path / "storage"
    archive = write_zip(tmp_path / "inputs" / "study.zip", write_study(tmp_path / "src", 5))
    # The child's system temporary directory is this test's, so what it leaves there is seen.
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    # A named pipe after the ZIP: the import blocks on it once the members are unpacked and
    # the files before it copied (as in test_import_crash).
    fifo = tmp_path / "zz-pipe.dcm"
    os.mkfifo(fifo)
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp_path), "DATABASE_URL": _url_of_test_database(),
           "TMPDIR": str(system_tmp)}
    child = subprocess.Popen([sys.executable, "manage.py", "import_dicom", str(archive), str(fifo)],  # noqa: S603
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        with open(fifo, "wb", buffering=0) as probe, pytest.raises(BrokenPipeError):
            while True:  # the look for a ZIP reads the pipe's first bytes, then lets go
                probe.write(bytes(4096))
        writer = open(fifo, "wb")  # noqa: SIM115 - returns once pass 1 opens the pipe to read it
        assert len(unpacked_members(tmp_path)) == 5, "the ZIP's members were unpacked before the pipe"
        (folder,) = run_folders(stored)
        # A live import's unpacked members are left alone by a sweep.
        assert storage.purge_incoming() == 0
        assert len(unpacked_members(tmp_path)) == 5
        workers = _children(child.pid)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        writer.close()
        assert wait_until_unlocked(Path(f"{folder}.lock")), "a worker of the killed import is still alive"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not Instance.objects.exists()

    other = synth.write_instance(tmp_path / "other" / "one.dcm", patient_id="NEXT1")
    summary = dicom_import(actor=importer(), paths=[other])
    assert summary.imported == 1
    assert unpacked_members(tmp_path) == [], "the killed import's unpacked members are still there"
    assert list(system_tmp.iterdir()) == []
    assert incoming_left(stored) == []


def test_a_zip_is_unpacked_in_the_run_folder_and_removed_with_it(inputs, tmp_path, dicom_storage, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    os.mkdir(tempfile.tempdir)
    seen: list[Path] = []
    real_unpack_folder = storage.unpack_folder

    @contextlib.contextmanager
    def watched(run):
        with real_unpack_folder(run) as folder:
            seen.append(folder)
            yield folder

    monkeypatch.setattr(storage, "unpack_folder", watched)
    archive = write_zip(inputs / "study.zip", write_study(tmp_path / "src", 3))
    summary = dicom_import(actor=importer(), paths=[archive])
    assert summary.imported == 3
    (folder,) = seen
    assert folder.parent.parent == dicom_storage / ".incoming"
    assert not folder.exists()
    assert incoming_left(dicom_storage) == []
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_path_traversal_members_and_a_bomb_are_still_refused_and_nothing_lands_outside(inputs, tmp_path, dicom_storage):
    good = write_study(tmp_path / "src", 1)[0].read_bytes()
    archive = inputs / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EXAM/IM0001", good)
        # From .incoming/run-*/unpacked/, ../../ is the storage's own root.
        zf.writestr("../../zip-slip-evil.dcm", good)
        zf.writestr("../zip-slip-evil.dcm", good)
        zf.writestr("/abs/zip-slip-evil.dcm", good)
        zf.writestr("bomb.dcm", b"\0" * (40 * 1024 * 1024))
    summary = dicom_import(actor=importer(), paths=[archive])
    by_member = {f.path.split("!", 1)[1]: f for f in summary.files}
    assert by_member["EXAM/IM0001"].outcome == "imported"
    for name in ("../../zip-slip-evil.dcm", "../zip-slip-evil.dcm", "/abs/zip-slip-evil.dcm"):
        assert "Unsafe archive member" in by_member[name].reason
    assert "zip bomb" in by_member["bomb.dcm"].reason
    assert [p for p in tmp_path.rglob("*zip-slip-evil*")] == []
    assert incoming_left(dicom_storage) == []


def test_object_storage_unpacks_in_a_locked_temporary_run_folder_and_sweeps_dead_ones(inputs, tmp_path, settings,
                                                                                        monkeypatch):
    """No local run folder on object storage: a locked run folder under <tmp>/lightbox-import/,
    swept as .incoming is (a dead one's removed, a live one's kept)."""
    settings.STORAGES = {**settings.STORAGES, "dicom": {"BACKEND": f"{ObjectStorage.__module__}.ObjectStorage"}}
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    root = tmp_path / "system-tmp" / storage.UNPACK_TEMP_ROOT
    root.mkdir(parents=True)
    (root / "run-dead").mkdir()
    (root / "run-dead" / "m000001").write_bytes(b"x")
    (root / "run-dead.lock").write_bytes(b"")
    alive = storage.IncomingRun()
    assert alive.path is None
    with storage.unpack_folder(alive) as live:
        (live / "m000001").write_bytes(b"x")
        archive = write_zip(inputs / "study.zip", write_study(tmp_path / "src", 2))
        summary = dicom_import(actor=importer(), paths=[archive])
        assert summary.imported == 2
        assert sorted(p.name for p in root.iterdir()) == sorted([live.name, f"{live.name}.lock"])
    assert list(root.iterdir()) == []

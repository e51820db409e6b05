"""Storage that cannot take a file (full, over quota, an I/O error) stops the import: the message
says so and names the file, nothing of that file's study is recorded, the run's copies are
removed, and the command exits non-zero (issue 18). It was reported as "Cannot read the file"
and the run went on."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from audit.models import AccessEvent
from imaging import storage
from imaging.dicom import synth
from imaging.models import Instance, Study
from imaging.services.ingest import ImportStorageError, dicom_import
from tests.imaging.helpers import importer
from tests.imaging.test_import_batches import ROOT, ObjectStorage, _url_of_test_database, incoming_left, write_study

pytestmark = pytest.mark.django_db

SMALL = "2m"  # the tmpfs below: room for about 15 of the 256 x 256 slices


@pytest.fixture
def small_data_dir(tmp_path):
    """A data dir whose storage is a real 2 MB filesystem (tmpfs), so writes fail with ENOSPC."""
    data = tmp_path / "data"
    mount = data / "storage"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0700", "tmpfs", str(mount)],  # noqa: S603, S607
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a small tmpfs to fill cannot be mounted here (needs root): {done.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", str(mount)], check=True)  # noqa: S603, S607


def test_a_full_disk_stops_the_command_naming_the_file_and_records_nothing(tmp_path, small_data_dir):
    inputs = tmp_path / "inputs"
    study_uid = synth.new_uid()
    series_uid = synth.new_uid()
    files = [synth.write_instance(inputs / f"s{i:03d}.dcm", patient_id="FULL1", study_uid=study_uid,
                                  series_uid=series_uid, rows=256, cols=256, seed=i) for i in range(30)]
    assert sum(f.stat().st_size for f in files) > 3 * 1024**2  # more than the storage holds
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(small_data_dir), "DATABASE_URL": _url_of_test_database()}

    run = subprocess.run([sys.executable, "manage.py", "import_dicom", str(inputs)], cwd=ROOT, env=env,  # noqa: S603
                         capture_output=True, text=True, timeout=300)

    assert run.returncode != 0, run.stdout
    assert "The storage is full (No space left on device)" in run.stderr, run.stderr
    named = [f for f in files if str(f) in run.stderr]
    assert len(named) == 1, run.stderr  # the file that could not be written, by its path
    assert "Cannot read" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert not Study.objects.filter(study_uid=study_uid).exists()
    assert not Instance.objects.exists()
    assert not AccessEvent.objects.filter(action="ingest").exists()
    stored = small_data_dir / "storage"
    assert incoming_left(stored) == []  # the run's copies are gone: the space is free again
    assert not (stored / "dicom").exists() or not any((stored / "dicom").rglob("*.dcm"))

    # A disk already full when the import starts: no room even for the run's own folder.
    with open(stored / "filler", "wb") as filler, pytest.raises(OSError) as full:
        while True:
            filler.write(bytes(64 * 1024))
    assert full.value.errno == errno.ENOSPC
    again = subprocess.run([sys.executable, "manage.py", "import_dicom", str(inputs)], cwd=ROOT, env=env,  # noqa: S603
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0, again.stdout
    assert "The storage is full (No space left on device)" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr


class FullAfterTwo(ObjectStorage):
    """Object storage that takes two objects and then answers as a full disk (or quota) does."""

    saves = 0

    def _save(self, name, content):  # noqa: ANN001, ANN202 - Django's signature
        FullAfterTwo.saves += 1
        if FullAfterTwo.saves > 2:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return super()._save(name, content)


def test_storage_failing_while_a_study_is_written_keeps_earlier_studies_and_rolls_that_one_back(inputs, settings):
    settings.STORAGES = {**settings.STORAGES, "dicom": {"BACKEND": f"{__name__}.FullAfterTwo"}}
    FullAfterTwo.saves = 0
    first_uid, second_uid = synth.new_uid(), synth.new_uid()
    write_study(inputs, 2, study_uid=first_uid)  # f0000, f0001
    write_study(inputs, 2, study_uid=second_uid, start=2)  # f0002, f0003: the third object fails

    with pytest.raises(ImportStorageError) as caught:
        dicom_import(actor=importer(), paths=[inputs])

    message = str(caught.value)
    assert message.startswith("Import stopped. The storage is full (Disk quota exceeded): ")
    assert f"{inputs / 'f0002.dcm'} could not be stored" in message
    assert "the 1 study imported before it are complete" in message
    assert Instance.objects.filter(series__study__study_uid=first_uid).count() == 2
    assert AccessEvent.objects.filter(study__study_uid=first_uid, action="ingest").count() == 1
    assert not Study.objects.filter(study_uid=second_uid).exists()
    assert Instance.objects.count() == 2
    assert caught.value.summary.studies == [first_uid]


def test_a_write_error_that_is_not_a_full_disk_says_the_storage_could_not_be_written():
    error = storage.StorageWriteError("scan/one.dcm", errno.EIO, os.strerror(errno.EIO))
    assert not error.full
    assert str(error) == "The storage could not be written (Input/output error): scan/one.dcm could not be stored."
    assert storage.StorageWriteError(*error.args).source == "scan/one.dcm"  # crosses from a worker (pickled)


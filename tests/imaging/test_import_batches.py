"""The bulk import (issue 18): a study's files written together, one read of each file, worker
processes for big runs, overlapping imports of the same files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import InMemoryStorage
from django.db import connection

from audit.models import AccessEvent
from imaging import storage
from imaging.dicom import synth
from imaging.models import Instance, Series, Study
from imaging.services import staging
from imaging.services.ingest import dicom_import
from tests.imaging.helpers import importer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_study(folder: Path, count: int, *, study_uid: str | None = None, start: int = 0) -> list[Path]:
    study_uid = study_uid or synth.new_uid()
    series_uid = synth.new_uid()
    return [
        synth.write_instance(folder / f"f{start + i:04d}.dcm", patient_id="BATCH1", study_uid=study_uid,
                             series_uid=series_uid, seed=start + i, values={"InstanceNumber": str(start + i + 1)})
        for i in range(count)
    ]


def incoming_left(root: Path) -> list[str]:
    """What is left under .incoming/, every run's folder walked."""
    folder = root / ".incoming"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_bad_files_in_the_middle_of_a_study_reject_only_themselves_and_write_nothing(inputs, dicom_storage):
    other = write_study(inputs.parent / "other", 1)
    dicom_import(actor=importer(), paths=[other[0]])
    foreign_series = Series.objects.get()
    study_uid = synth.new_uid()
    good = write_study(inputs, 3, study_uid=study_uid) + write_study(inputs, 3, study_uid=study_uid, start=10)
    # Rejected in the study's pass, among the others: another patient's file under this Study
    # UID, and a file naming a series that belongs to another study.
    wrong_patient = synth.write_instance(inputs / "f0005.dcm", patient_id="SOMEONE-ELSE", study_uid=study_uid)
    wrong_series = synth.write_instance(inputs / "f0006.dcm", patient_id="BATCH1", study_uid=study_uid,
                                        series_uid=foreign_series.series_uid)
    # Rejected while parsing: a truncated copy.
    (inputs / "f0007.dcm").write_bytes(good[0].read_bytes()[:-100])

    summary = dicom_import(actor=importer(), paths=[inputs])

    names = [Path(f.path).name for f in summary.files]
    assert names == sorted(names)  # the report keeps file order
    by_name = {Path(f.path).name: f for f in summary.files}
    assert by_name["f0005.dcm"].outcome == "rejected", by_name["f0005.dcm"]
    assert by_name["f0005.dcm"].reason == "Patient ID differs from the rest of this study."
    assert by_name["f0006.dcm"].outcome == "rejected"
    assert by_name["f0006.dcm"].reason == "This Series Instance UID belongs to another study."
    assert by_name["f0007.dcm"].outcome == "rejected"
    assert all(by_name[p.name].outcome == "imported" for p in good), summary.as_dict()
    study = Study.objects.get(study_uid=study_uid)
    assert Instance.objects.filter(series__study=study).count() == 6
    assert Series.objects.filter(study=study).count() == 2
    assert foreign_series.instances.count() == 1
    for bad in (wrong_patient, wrong_series):
        assert not (dicom_storage / storage.dicom_name(sha256_of(bad))).exists()
    assert incoming_left(dicom_storage) == []
    events = AccessEvent.objects.filter(study_id=study.pk, action="ingest")
    assert [e.details["instances"] for e in events] == [6]  # one event for the study's batch


def test_each_file_is_stored_under_the_sha256_of_its_bytes(inputs, dicom_storage):
    files = write_study(inputs, 4)

    dicom_import(actor=importer(), paths=[inputs])

    for path in files:
        digest = sha256_of(path)
        row = Instance.objects.get(sha256=digest)
        stored = dicom_storage / row.storage_path
        assert row.storage_path == storage.dicom_name(digest)
        assert row.size == path.stat().st_size
        assert sha256_of(stored) == digest
        assert stored.stat().st_mode & 0o777 == 0o640
    assert incoming_left(dicom_storage) == []


def test_receive_file_hashes_what_it_writes_in_one_read(tmp_path, dicom_storage):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * storage.CHUNK + 12345))  # several chunks and a partial one

    with storage.IncomingRun() as run:
        incoming = storage.receive_file(source, run)
        assert incoming.temp_path.startswith(run.path + "/")
        assert incoming.digest == storage.Digest(sha256_of(source), source.stat().st_size)
        assert sha256_of(Path(incoming.temp_path)) == incoming.digest.sha256
        name = storage.commit_incoming(incoming, source)
        assert sha256_of(dicom_storage / name) == incoming.digest.sha256
        again = storage.receive_file(source, run)
        assert storage.commit_incoming(again, source) == name  # the existing object is kept
        assert not os.path.exists(again.temp_path)
    assert incoming_left(dicom_storage) == []


def test_a_big_run_uses_worker_processes_with_the_same_outcomes(inputs, dicom_storage, monkeypatch):
    monkeypatch.setattr(staging, "POOL_MIN_FILES", 4)
    study_uid = synth.new_uid()
    files = write_study(inputs, 10, study_uid=study_uid)
    (inputs / "f0003.dcm").write_bytes(b"not dicom at all" * 20)
    assert staging.workers_for(len(files)) == min(os.cpu_count() or 1, 2)

    summary = dicom_import(actor=importer(), paths=[inputs])

    assert [Path(f.path).name for f in summary.files] == [f"f{i:04d}.dcm" for i in range(10)]
    assert [f.outcome for f in summary.files] == ["imported"] * 3 + ["rejected"] + ["imported"] * 6
    assert Instance.objects.filter(series__study__study_uid=study_uid).count() == 9
    again = dicom_import(actor=importer(), paths=[inputs])
    assert [f.outcome for f in again.files] == ["duplicate"] * 3 + ["rejected"] + ["duplicate"] * 6
    assert incoming_left(dicom_storage) == []


class ObjectStorage(InMemoryStorage):
    """Object storage as Lightbox sees it (S3 and the like lie outside the project): no local path.
    Django's InMemoryStorage answers path() with a name under MEDIA_ROOT, which S3 backends do not."""

    def path(self, name: str) -> str:
        raise NotImplementedError("This backend doesn't support absolute paths.")

    def _relative_path(self, name: str) -> str:  # InMemoryStorage's own bookkeeping, not a file path
        return os.path.relpath(InMemoryStorage.path(self, name), self.location)


def test_object_storage_without_local_paths_is_hashed_then_stored_from_the_source(tmp_path, settings):
    """A backend with no filesystem path gets no temporary copy: the digest is taken from the
    source and commit_incoming stores from it (imaging/storage.py's NotImplementedError branch)."""
    settings.STORAGES = {**settings.STORAGES, "dicom": {"BACKEND": f"{__name__}.ObjectStorage"}}
    source = tmp_path / "one.dcm"
    source.write_bytes(b"DICM" + os.urandom(5000))
    run = storage.IncomingRun()
    assert run.path is None
    incoming = storage.receive_file(source, run)
    assert incoming.temp_path is None
    assert incoming.digest == storage.Digest(hashlib.sha256(source.read_bytes()).hexdigest(), 5004)
    name = storage.commit_incoming(incoming, source)
    assert name == storage.dicom_name(incoming.digest.sha256)
    with storage.open_stored(name) as fh:
        assert fh.read() == source.read_bytes()
    assert storage.commit_incoming(storage.receive_file(source, run), source) == name  # the same bytes: one object


@pytest.mark.django_db(transaction=True)
def test_three_overlapping_imports_of_the_same_files_store_each_once_without_errors(tmp_path):
    assert connection.vendor == "postgresql", "concurrent writers need the suite's PostgreSQL"
    inputs = tmp_path / "inputs"
    study_uid = synth.new_uid()
    count = 2 * staging.POOL_MIN_FILES  # worker processes too (one per POOL_MIN_FILES files, up to the cores)
    write_study(inputs, count, study_uid=study_uid)
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(tmp_path / "data"),
           "DATABASE_URL": _url_of_test_database()}
    command = [sys.executable, "manage.py", "import_dicom", "--json", str(inputs)]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
            for _ in range(3)]
    results = [(run.communicate(timeout=300), run.returncode) for run in runs]

    outcomes = []
    for (out, err), code in results:
        assert code == 0, err.decode()[-2000:]
        report = json.loads(out)
        assert report["rejected"] == 0 and report["conflict"] == 0, report["files"][:3]
        outcomes.append((report["imported"], report["duplicate"]))
    assert sorted(outcomes) == [(0, count), (0, count), (count, 0)]
    rows = Instance.objects.filter(series__study__study_uid=study_uid)
    assert rows.count() == count
    assert Study.objects.filter(study_uid=study_uid).count() == 1
    assert AccessEvent.objects.filter(study_id=rows.first().series.study_id, action="ingest").count() == 1
    stored = tmp_path / "data" / "storage"
    assert sorted(p.name for p in (stored / "dicom").rglob("*.dcm")) == sorted(f"{r.sha256}.dcm" for r in rows)
    assert incoming_left(stored) == []


def _url_of_test_database() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"

"""The two failure cases of docs/security.md §17 with a real Celery worker process on Redis:
a worker SIGKILLed mid-packaging, and a broker outage at request time."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from django.conf import settings

from exports import services
from exports.models import ExportRequest
from imaging.models import Instance
from tests.conftest import WorkerProcess, login_verified, reauthenticate, wait_for
from tests.exports.conftest import broker_down, make_study, open_with_7z, verify_archive

pytestmark = pytest.mark.worker


def _status(export_id: int) -> ExportRequest:
    return ExportRequest.objects.get(pk=export_id)


def _request(client) -> tuple[ExportRequest, str]:
    reauthenticate(client)
    response = client.post("/exports/new/", {"scope": "all", "kind": "original"})
    assert response.status_code == 200, response.content[:300]
    return response.context["export"], response.context["passphrase"]


def _stored(instance: Instance) -> Path:
    return Path(settings.STORAGES["dicom"]["OPTIONS"]["location"]) / instance.storage_path


def test_worker_killed_mid_packaging_leaves_no_archive_and_the_job_completes_once(
        client, patient, tmp_path, celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=4)
    # The last file in archive order is a FIFO with no writer: opening it blocks, so the worker is
    # reliably caught after it has packaged three files and before it can finish.
    last = Instance.objects.filter(series__study=study).order_by("number").last()
    stored = _stored(last)
    original = stored.read_bytes()
    stored.unlink()
    os.mkfifo(stored)
    try:
        login_verified(client, patient)
        export, passphrase = _request(client)
        running = wait_for(lambda: (e := _status(export.pk)).status == "packaging" and e.progress >= 50 and e,
                           what="packaging to reach the blocked file")
        final = services.archive_path(running)
        partial = list(final.parent.glob(f".tmp-{final.name}-*"))
        assert partial and not final.exists()

        celery_worker_process.stop(signal.SIGKILL)
        assert not final.exists(), "a killed worker must leave no visible archive"
    finally:
        stored.unlink()
        stored.write_bytes(original)
        os.chmod(stored, 0o640)

    second = WorkerProcess(tmp_path / "worker2.log")
    try:
        second.wait_ready()
        # The dead worker's heartbeat on the job is recent; the reconciler's short limit stands
        # in for the minutes a real deployment waits before presuming it dead.
        assert services.exports_reconcile(stale_after=0) == 1
        done = wait_for(lambda: (e := _status(export.pk)).status not in ExportRequest.ACTIVE and e, timeout=60,
                        what="the job to finish on the second worker")
    finally:
        second.stop()
    assert done.status == "ready" and done.passphrase_encrypted == ""
    # The published archive and nothing else: no temporary file of the killed worker is left.
    assert [p.name for p in final.parent.iterdir() if final.name in p.name] == [final.name]
    out = tmp_path / "out"
    assert open_with_7z(final, passphrase, out).returncode == 0
    verify_archive(out, [study], deidentified=False)
    final.unlink()  # the worker's export dir is shared with other runs
    # Completed exactly once: one "ready" email across both workers (console backend).
    logs = (tmp_path / "worker.log").read_text() + (tmp_path / "worker2.log").read_text()
    assert logs.count("Your export is ready") == 1


def test_broker_outage_keeps_the_request_and_the_reconciler_dispatches_it(client, patient, tmp_path,
                                                                           celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=2)
    login_verified(client, patient)
    with broker_down():
        export, passphrase = _request(client)  # the page works: the passphrase is shown
        status = client.get(f"/exports/{export.pk}/status/").json()
    assert status["status"] == "queued"
    assert _status(export.pk).dispatched_at is None

    assert services.exports_reconcile() == 1
    done = wait_for(lambda: (e := _status(export.pk)).status not in ExportRequest.ACTIVE and e, timeout=60,
                    what="the reconciled job to finish")
    assert done.status == "ready"
    out = tmp_path / "out"
    assert open_with_7z(services.archive_path(done), passphrase, out).returncode == 0
    verify_archive(out, [study], deidentified=False)
    services.archive_path(done).unlink()


def _pixel_libraries(pid: int) -> set[str]:
    """The native parts of numpy, Pillow and pylibjpeg that process ``pid`` has loaded (each
    comes with ``import pydicom``, which is pure Python and so not seen in the maps itself)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    names = {Path(line.split()[-1]).name for line in maps if ".so" in line}
    return {n for n in names if n.startswith(("_multiarray_umath", "_imaging.", "_libjpeg", "_openjpeg"))}


def test_an_original_export_never_loads_the_pixel_stack(client, patient, tmp_path, celery_worker_process):
    """The export worker's memory target (under 100 MB, benchmarks/export_memory.py) rests on
    this: neither starting a worker nor packaging an original loads pydicom, numpy or Pillow
    (49 MB together). A de-identified copy needs them, which shows the check can fail."""
    make_study(patient, tmp_path / "s", slices=2)
    login_verified(client, patient)
    pid = celery_worker_process.proc.pid
    assert _pixel_libraries(pid) == set()

    archives = []
    for kind in ("original", "deidentified"):
        reauthenticate(client)
        response = client.post("/exports/new/", {"scope": "all", "kind": kind})
        assert response.status_code == 200, response.content[:300]
        export = response.context["export"]
        done = wait_for(lambda e=export: (x := _status(e.pk)).status not in ExportRequest.ACTIVE and x, timeout=60,
                        what=f"the {kind} export")
        assert done.status == "ready", done.error
        archives.append(services.archive_path(done))
        if kind == "original":
            assert _pixel_libraries(pid) == set(), "packaging an original loaded the pixel stack"
    assert any(name.startswith("_multiarray_umath") for name in _pixel_libraries(pid))
    for archive in archives:
        archive.unlink()  # the worker's export dir is shared with other runs

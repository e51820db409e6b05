"""The export worker's guards, each with real Celery worker processes on Redis and PostgreSQL:
a duplicate delivery while a live worker packages the job does nothing (``_claim``); a worker
that lost the job between its last file and the publish throws its archive away
(``export_package``); a job cancelled mid-packaging is never published. And the test harness's
own: a worker stuck in a task is SIGKILLed by ``WorkerProcess.stop`` after its grace period,
and the message it held is purged before the next worker test.

A worker is held mid-packaging by turning the last stored file into a FIFO with no writer: the
worker blocks opening it, after it has claimed the job and packaged the other files. Writing
the original bytes into the FIFO lets it go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from exports import services
from exports.models import ExportRequest
from exports.tasks import package_export
from imaging.models import Instance
from portal.celery import app as celery_app
from tests.conftest import WorkerProcess, login_verified, purge_test_broker, reauthenticate, wait_for
from tests.exports.conftest import make_study, open_with_7z, verify_archive

pytestmark = pytest.mark.worker


class HeldFile:
    """The study's last file (in archive order) as a FIFO: opening it blocks until ``release``."""

    def __init__(self, study) -> None:
        last = Instance.objects.filter(series__study=study).order_by("number").last()
        self.path = Path(settings.STORAGES["dicom"]["OPTIONS"]["location"]) / last.storage_path
        self.original = self.path.read_bytes()
        self.path.unlink()
        os.mkfifo(self.path)
        self._writer: threading.Thread | None = None

    def release(self) -> None:
        """Feed the original bytes to the (blocked) reader, from a thread: opening a FIFO to write
        waits for its reader."""
        def feed() -> None:
            with open(self.path, "wb") as fifo:
                fifo.write(self.original)

        self._writer = threading.Thread(target=feed, daemon=True)
        self._writer.start()

    def restore(self) -> None:
        if self._writer is None:
            # Nobody was fed: open the FIFO without blocking, so a reader still waiting gets EOF.
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        else:
            self._writer.join(timeout=10)
        self.path.unlink()
        self.path.write_bytes(self.original)
        os.chmod(self.path, 0o640)


@contextlib.contextmanager
def held_last_file(study):
    held = HeldFile(study)
    try:
        yield held
    finally:
        held.restore()


def _row(export_id: int) -> ExportRequest:
    return ExportRequest.objects.get(pk=export_id)


def _request(client, patient) -> tuple[ExportRequest, str]:
    login_verified(client, patient)
    reauthenticate(client)
    response = client.post("/exports/new/", {"scope": "all", "kind": "original"})
    assert response.status_code == 200, response.content[:300]
    return response.context["export"], response.context["passphrase"]


def _held_mid_packaging(export_id: int) -> ExportRequest:
    return wait_for(lambda: (e := _row(export_id)).status == "packaging" and e.progress >= 50 and e,
                    what="packaging to reach the held file")


def _temp_files(export: ExportRequest) -> list[Path]:
    final = services.archive_path(export)
    return list(final.parent.glob(f".tmp-{final.name}-*"))


def _task_finished(log: Path, task_id: str | None = None) -> bool:
    """Whether the worker writing ``log`` finished the packaging task ``task_id`` (or any)."""
    pattern = rf"Task exports\.package\[{re.escape(task_id) if task_id else '[0-9a-f-]+'}\] succeeded"
    return re.search(pattern, log.read_text(errors="replace")) is not None


def test_a_duplicate_delivery_to_a_second_worker_leaves_the_live_workers_job_alone(
        client, patient, tmp_path, celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=4)
    second = None
    with held_last_file(study) as held:
        export, passphrase = _request(client, patient)
        running = _held_mid_packaging(export.pk)
        claimed_at, partial = running.started_at, _temp_files(running)
        assert partial

        # The same job delivered again (a redelivery, the reconciler): the first worker is busy
        # with one message (prefetch 1), so a second worker takes it.
        second = WorkerProcess(tmp_path / "worker2.log")
        try:
            second.wait_ready()
            duplicate = package_export.delay(export.pk)
            wait_for(lambda: _task_finished(tmp_path / "worker2.log", duplicate.id), timeout=30,
                     what="the second worker to finish with the duplicate")
            now = _row(export.pk)
            assert now.status == "packaging" and now.started_at == claimed_at, "the live worker's claim was taken"
            assert _temp_files(now) == partial, "the live worker's temporary file was removed"

            held.release()
            done = wait_for(lambda: (e := _row(export.pk)).status not in ExportRequest.ACTIVE and e, timeout=60,
                            what="the first worker to finish")
        finally:
            second.stop(grace=5)
    assert done.status == "ready" and done.started_at == claimed_at
    out = tmp_path / "out"
    assert open_with_7z(services.archive_path(done), passphrase, out).returncode == 0
    verify_archive(out, [study], deidentified=False)
    services.archive_path(done).unlink()  # the worker's export dir is shared with other runs
    logs = (tmp_path / "worker.log").read_text() + (tmp_path / "worker2.log").read_text()
    assert logs.count("Your export is ready") == 1


def _waiting_on_my_lock() -> int:
    """Backends waiting for the transaction this connection is in (pg_locks is read live)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks w JOIN pg_locks mine ON mine.locktype = 'transactionid'"
            " AND mine.transactionid = w.transactionid AND mine.pid = pg_backend_pid() AND mine.granted"
            " WHERE w.locktype = 'transactionid' AND NOT w.granted"
        )
        return cursor.fetchone()[0]


def test_a_worker_that_lost_the_job_before_publishing_throws_its_archive_away(
        client, patient, tmp_path, celery_worker_process):
    """The window between the worker's last progress report and its publish: a FOR KEY SHARE
    lock held here lets the progress UPDATEs through (no conflict with FOR NO KEY UPDATE) and
    stops the publish's SELECT ... FOR UPDATE. While it waits, another worker "claims" the job
    (a new started_at, as ``_claim`` writes); then the lock goes."""
    study = make_study(patient, tmp_path / "s", slices=4)
    with held_last_file(study) as held:
        export, _ = _request(client, patient)
        running = _held_mid_packaging(export.pk)
        final = services.archive_path(running)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM exports_exportrequest WHERE id = %s FOR KEY SHARE", [export.pk])
            held.release()
            wait_for(lambda: _waiting_on_my_lock(), what="the worker to wait for the row at publish")
            assert _row(export.pk).progress == 99  # every file packaged and reported
            taken_over = timezone.now()
            ExportRequest.objects.filter(pk=export.pk).update(started_at=taken_over, heartbeat_at=taken_over, progress=0)
        wait_for(lambda: _task_finished(tmp_path / "worker.log"), what="the worker to give up the job")
    after = _row(export.pk)
    assert not final.exists(), "a worker that no longer owns the job published its archive"
    assert _temp_files(after) == []
    assert (after.status, after.started_at, after.progress) == ("packaging", taken_over, 0)
    assert "Your export is ready" not in (tmp_path / "worker.log").read_text()


def test_a_job_cancelled_mid_packaging_is_never_published(client, patient, tmp_path, celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=4)
    with held_last_file(study) as held:
        export, _ = _request(client, patient)
        running = _held_mid_packaging(export.pk)
        final = services.archive_path(running)
        assert _temp_files(running)
        response = client.post(f"/exports/{export.pk}/cancel/")
        assert response.status_code == 302
        assert _row(export.pk).status == "cancelled"
        held.release()
        wait_for(lambda: _task_finished(tmp_path / "worker.log"), what="the worker to notice the cancellation")
    after = _row(export.pk)
    assert after.status == "cancelled" and after.passphrase_encrypted == "" and after.expires_at is None
    assert not final.exists() and _temp_files(after) == []
    assert "Your export is ready" not in (tmp_path / "worker.log").read_text()
    page = client.get(f"/exports/{export.pk}/").content.decode()
    assert "Cancelled" in page and "Download the encrypted file" not in page


def _unacknowledged() -> list[tuple[str, str]]:
    """(task name, arguments) of the messages the Redis transport holds as delivered, unacked."""
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        rows = [json.loads(raw)[0] for raw in channel.client.hvals(channel.unacked_key)]
    return [(row["headers"]["task"], row["headers"]["argsrepr"]) for row in rows]


def test_stop_kills_a_worker_stuck_in_a_task_and_its_message_is_purged(client, patient, tmp_path,
                                                                       celery_worker_process):
    """SIGTERM is Celery's warm shutdown: it waits for the running task, here forever. ``stop``
    SIGKILLs it after the grace period; the job's message, delivered but never acknowledged
    (acks_late), is still in the broker until the purge the worker fixture does first."""
    study = make_study(patient, tmp_path / "s", slices=4)
    with held_last_file(study):
        export, _ = _request(client, patient)
        _held_mid_packaging(export.pk)
        celery_worker_process.stop(grace=2)
        assert celery_worker_process.escalated
        assert celery_worker_process.proc.returncode == -signal.SIGKILL
        assert "Warm shutdown" in (tmp_path / "worker.log").read_text()
    assert ("exports.package", f"({export.pk},)") in _unacknowledged()  # the killed worker's message
    assert purge_test_broker() >= 1
    assert _unacknowledged() == [] and purge_test_broker() == 0
    services.archive_path(export).unlink(missing_ok=True)

"""A push with real Celery worker processes on Redis and PostgreSQL, to a real Orthanc: a worker
SIGKILLed mid-push is replaced, and the push completes exactly once — every file at the partner
byte for byte, none sent again that the partner had already accepted, one share in the log; a
broker outage when the patient asks leaves the push queued, and the reconciler sends it.

The worker is held mid-push by turning the last file (in sending order) into a FIFO with no
writer: the worker blocks opening it, after it has sent and recorded the others.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import AccessEvent
from imaging.models import Instance
from imaging.storage import open_stored
from sharing import services
from sharing.models import Push, PushedInstance
from tests.conftest import WorkerProcess, login_verified, reauthenticate, wait_for
from tests.exports.conftest import broker_down, make_study

pytestmark = pytest.mark.worker


def _row(push_id: int) -> Push:
    return Push.objects.get(pk=push_id)


def test_a_worker_killed_mid_push_is_replaced_and_the_push_completes_once(
        client, patient, partner, partner_archive, tmp_path, celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=4)
    instances = list(Instance.objects.filter(series__study=study).order_by("pk"))
    stored = Path(settings.STORAGES["dicom"]["OPTIONS"]["location"]) / instances[-1].storage_path
    original = stored.read_bytes()
    stored.unlink()
    os.mkfifo(stored)
    try:
        login_verified(client, patient)
        reauthenticate(client)
        response = client.post("/sharing/send/", {"studies": [str(study.pk)], "partner": str(partner.pk)})
        assert response.status_code == 302, response.content[:300]
        push = Push.objects.get(patient=patient.patient)
        held = wait_for(lambda: (p := _row(push.pk)).status == "sending" and p.sent == 3 and p,
                        what="the worker to send three files and block on the fourth")
        first_claim = held.started_at
        celery_worker_process.stop(signal.SIGKILL)
    finally:
        stored.unlink()
        stored.write_bytes(original)
        os.chmod(stored, 0o640)
    assert _row(push.pk).status == "sending" and not AccessEvent.objects.filter(action="share").exists()

    second = WorkerProcess(tmp_path / "worker2.log")
    try:
        second.wait_ready()
        # The dead worker's heartbeat is recent; the reconciler's short limit stands in for the
        # minutes a deployment waits before presuming it dead.
        assert services.pushes_reconcile(stale_after=0) == 1
        done = wait_for(lambda: (p := _row(push.pk)).status not in Push.ACTIVE and p, timeout=60,
                        what="the push to finish on the second worker")
    finally:
        second.stop()
    assert (done.status, done.sent, done.total, done.attempts) == ("sent", 4, 4, 2)
    # The second worker sent only the file the first had not finished: the three the partner had
    # accepted were recorded before the kill and skipped.
    pushed = PushedInstance.objects.filter(push=done)
    assert pushed.count() == 4 and not pushed.filter(sent_at__isnull=True).exists()
    assert {p.instance_id for p in pushed.filter(sent_at__lt=done.started_at)} == {i.pk for i in instances[:3]}
    assert done.started_at > first_claim
    for instance in instances:
        with open_stored(instance.storage_path) as fh:
            assert partner_archive.file(partner_archive.find_instance(instance.sop_uid)) == fh.read()
    [share] = AccessEvent.objects.filter(patient=patient.patient, action="share")
    assert share.organization == partner.name


def test_a_broker_outage_keeps_the_request_and_the_reconciler_sends_it(
        client, patient, partner, partner_archive, tmp_path, celery_worker_process):
    study = make_study(patient, tmp_path / "s", slices=2)
    login_verified(client, patient)
    reauthenticate(client)
    with broker_down():
        response = client.post("/sharing/send/", {"studies": [str(study.pk)], "partner": str(partner.pk)})
        assert response.status_code == 302  # the page works
        assert "Waiting to start" in client.get("/sharing/").content.decode()
    push = Push.objects.get()
    assert push.status == "queued" and push.dispatched_at is None

    assert services.pushes_reconcile() == 1
    done = wait_for(lambda: (p := _row(push.pk)).status not in Push.ACTIVE and p, timeout=60,
                    what="the reconciled push to finish")
    assert (done.status, done.sent) == ("sent", 2)
    for instance in Instance.objects.filter(series__study=study):
        assert partner_archive.find_instance(instance.sop_uid)

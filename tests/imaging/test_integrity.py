from __future__ import annotations

import pytest
from django.conf import settings

from imaging.dicom import synth
from imaging.models import Instance, IntegrityAlert
from imaging.services.ingest import dicom_import
from imaging.services.integrity import instances_verify
from imaging.tasks import verify_integrity
from portal.celery import app
from tests.imaging.helpers import importer

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(inputs) -> list[Instance]:
    study_uid = "1.2.826.0.1.95.1"
    for n in range(3):
        synth.write_instance(inputs / f"{n}.dcm", patient_id="INT1", study_uid=study_uid, seed=n)
    assert dicom_import(actor=importer(), paths=[inputs]).imported == 3
    return list(Instance.objects.order_by("pk"))


def test_untouched_files_verify(three):
    result = instances_verify()
    assert (result.checked, result.ok, result.mismatched, result.missing, result.alerts_created) == (3, 3, 0, 0, 0)
    for instance in Instance.objects.all():
        assert instance.verified_ok is True and instance.last_verified_at is not None
    assert not IntegrityAlert.objects.exists()


def test_tampered_file_raises_one_alert(three, dicom_storage):
    victim = three[1]
    path = dicom_storage / victim.storage_path
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one pixel changed
    path.write_bytes(bytes(data))

    result = instances_verify()
    assert (result.checked, result.ok, result.mismatched, result.alerts_created) == (3, 2, 1, 1)
    [alert] = IntegrityAlert.objects.all()
    assert alert.kind == "mismatch" and alert.instance == victim
    assert alert.expected_sha256 == victim.sha256 and alert.found_sha256 not in ("", victim.sha256)
    victim.refresh_from_db()
    assert victim.verified_ok is False

    again = instances_verify()
    assert again.mismatched == 1 and again.alerts_created == 0
    assert IntegrityAlert.objects.count() == 1


def test_missing_file_raises_one_alert(three, dicom_storage):
    (dicom_storage / three[0].storage_path).unlink()
    assert instances_verify().missing == 1
    assert instances_verify().alerts_created == 0
    [alert] = IntegrityAlert.objects.all()
    assert alert.kind == "missing" and alert.found_sha256 == ""


def test_least_recently_verified_first_and_limit(three):
    assert instances_verify(limit=2).checked == 2
    unchecked = Instance.objects.get(last_verified_at__isnull=True)
    instances_verify(limit=1)
    unchecked.refresh_from_db()
    assert unchecked.last_verified_at is not None


def test_one_study(three, inputs):
    other = synth.write_instance(inputs / "other" / "x.dcm", patient_id="INT2")
    dicom_import(actor=importer(), paths=[other])
    assert instances_verify(study=three[0].series.study).checked == 3


def test_task_is_registered_scheduled_and_runs(three, dicom_storage):
    assert "imaging.verify_integrity" in app.tasks
    entry = settings.CELERY_BEAT_SCHEDULE["imaging-verify-integrity"]
    assert entry["task"] == "imaging.verify_integrity"
    (dicom_storage / three[2].storage_path).write_bytes(b"replaced")
    verify_integrity.apply()  # in-process, as the worker would run it; no arguments, no patient data
    assert IntegrityAlert.objects.get().kind == "mismatch"

"""The periodic task that brings integrity alerts into the queue, run by a real worker."""

from __future__ import annotations

import pytest

from flags.models import Flag
from flags.tasks import flags_from_integrity_alerts
from imaging.models import Instance, IntegrityAlert
from tests.conftest import wait_for
from tests.flags.conftest import make_study


@pytest.mark.django_db(transaction=True)
def test_real_worker_turns_an_alert_into_a_flag(celery_worker_process, patient):
    study = make_study(patient.patient, with_instance=True)
    instance = Instance.objects.get(series__study=study)
    alert = IntegrityAlert.objects.create(instance=instance, kind="mismatch", expected_sha256="a" * 64, found_sha256="b" * 64)
    flags_from_integrity_alerts.delay()  # ids-only task: no arguments at all
    flag = wait_for(lambda: Flag.objects.filter(integrity_alert=alert).first(), what="the flag")
    assert flag.category == "suspected_tampering" and flag.study == study
    assert flags_from_integrity_alerts() == 0  # idempotent: a redelivery creates nothing
    assert Flag.objects.count() == 1

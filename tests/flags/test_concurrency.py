"""Two officers claiming one flag at the same moment: the row lock lets exactly one win."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from flags import services
from flags.models import Flag, FlagEvent
from tests.factories import actor_of
from tests.flags.conftest import make_study
from tests.flags.test_patient import raise_flag


@pytest.mark.django_db(transaction=True)
def test_parallel_claims_leave_one_holder(patient, officer, second_officer):
    flag = raise_flag(patient, make_study(patient.patient))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def claim(user):
        try:
            barrier.wait()
            services.flag_claim(actor=actor_of(user), flag=Flag.objects.get(pk=flag.pk))
            outcomes.append("won")
        except PermissionDenied:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u,)) for u in (officer, second_officer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "won"]
    flag.refresh_from_db()
    assert flag.assignee in (officer, second_officer) and flag.status == "in_review"
    assert flag.events.filter(kind=FlagEvent.Kind.CLAIMED).count() == 1
    assert flag.events.filter(kind=FlagEvent.Kind.STATUS).count() == 1

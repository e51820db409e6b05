from __future__ import annotations

import pytest

from flags.demo import build_demo_flag
from flags.models import FlagEvent
from notices.models import Notice
from tests.flags.conftest import make_event, make_study

pytestmark = pytest.mark.django_db


def test_demo_flag_questions_the_latest_ai_vendor_access(patient, officer):
    study = make_study(patient.patient)
    make_event(patient.patient, study=study, organization="Older AI")
    latest = make_event(patient.patient, study=study, organization="Acme AI Ltd")
    flag = build_demo_flag(patient.patient, officer)
    assert flag.access_event == latest and flag.category == "unfamiliar_accessor"
    assert flag.assignee == officer and flag.status == "needs_info"
    assert flag.events.filter(kind=FlagEvent.Kind.MESSAGE_TO_PATIENT).exists()
    assert "Acme AI Ltd" in flag.description
    assert Notice.objects.filter(key=f"flag:{flag.pk}").exists()


def test_demo_flag_falls_back_to_a_study(patient, officer):
    study = make_study(patient.patient)
    flag = build_demo_flag(patient.patient, officer)
    assert flag.study == study and flag.category == "not_my_scan"
    study.refresh_from_db()
    assert study.status == "under_review"

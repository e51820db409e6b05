"""``manage.py list_shares --mrn``: a patient's pushes for the privacy office, nobody else's."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sharing.models import Partner, Push

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("list_shares", *args, stdout=out)
    return out.getvalue()


def test_lists_the_patients_pushes_and_no_one_elses(patient, other_patient, tmp_path):
    from tests.exports.conftest import make_study

    partner = Partner.objects.create(name="Eastgate Hospital", stow_url="https://pacs.eastgate.example/dicom-web")
    other_partner = Partner.objects.create(name="Hidden Vale Clinic", stow_url="https://pacs.vale.example/dicom-web")
    study = make_study(patient, tmp_path / "s", slices=1)
    mine = Push.objects.create(patient=patient.patient, partner=partner, total=1, sent=1, status="sent")
    mine.studies.set([study])
    Push.objects.create(patient=patient.patient, partner=partner, total=3, status="failed", error="Eastgate Hospital could not be reached.")
    Push.objects.create(patient=other_patient.patient, partner=other_partner, total=1)

    out = _run("--mrn", patient.patient.mrn)
    lines = out.strip().splitlines()
    assert lines[0].startswith("id\tkind")
    assert len(lines) == 3
    assert f"{mine.pk}\tpush\t" in lines[1] and "\tEastgate Hospital\tsent\t1/1\t" + study.study_uid in lines[1]
    assert "failed\t0/3" in lines[2] and "could not be reached" in lines[2]
    assert "Hidden Vale" not in out


def test_a_patient_with_no_shares(patient):
    assert _run("--mrn", patient.patient.mrn).strip() == "No shares."


def test_an_unknown_mrn_is_an_error(db):
    with pytest.raises(CommandError, match="No patient"):
        _run("--mrn", "NO-SUCH-MRN")

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


def test_lists_share_links_with_their_looks_and_revokes_one(patient, other_patient, tmp_path, django_capture_on_commit_callbacks):
    from django.test import Client

    from sharing import links
    from tests.exports.conftest import make_study
    from tests.factories import actor_of
    from tests.sharing.test_links import open_share

    study = make_study(patient, tmp_path / "s", slices=1)
    created = links.share_create(actor=actor_of(patient), study_ids=[study.pk], recipient_name="Dr Ada Lowe",
                                 recipient_organization="Northbrook Clinic", recipient_email="ada@northbrook.example",
                                 days=7, allow_download=False)
    theirs = links.share_create(actor=actor_of(other_patient), study_ids=[make_study(other_patient, tmp_path / "o", slices=1).pk],
                                recipient_name="Dr Hidden", recipient_organization="Hidden Vale", recipient_email="h@vale.example",
                                days=7, allow_download=False)
    client = open_share(Client(), created, django_capture_on_commit_callbacks)
    series = study.series.get()
    assert client.get(f"{created.path}studies/{study.pk}/series/{series.pk}/").status_code == 200
    out = _run("--mrn", patient.patient.mrn)
    line = next(ln for ln in out.splitlines() if "\tlink\t" in ln)
    assert line.startswith(f"{created.share.pk}\tlink\t")
    assert "Dr Ada Lowe at Northbrook Clinic <ada@northbrook.example>\tactive\t1 views, 0 downloads\t" + study.study_uid in line
    assert "Dr Hidden" not in out

    with pytest.raises(CommandError, match="reason"):
        _run("--revoke", str(created.share.pk))
    with pytest.raises(CommandError, match="No share link"):
        _run("--revoke", "987654", "--reason", "x")
    from django.core import mail

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert "revoked" in _run("--revoke", str(theirs.share.pk), "--reason", "Reported lost by the patient")
    assert [m.to for m in mail.outbox] == [[other_patient.email]]
    assert "Dr Hidden" in mail.outbox[0].subject and "Reported lost by the patient" in mail.outbox[0].body
    out = _run("--mrn", other_patient.patient.mrn)
    assert "\trevoked\t" in out and "revoked by the privacy office" in out and "Reported lost by the patient" in out
    assert client.get(f"{created.path}studies/").status_code == 200  # the other patient's revoke left this one open


def test_the_office_stops_an_unfinished_push_but_not_a_sent_one(patient, tmp_path, django_capture_on_commit_callbacks):
    from django.core import mail

    partner = Partner.objects.create(name="Eastgate Hospital", stow_url="https://pacs.eastgate.example/dicom-web")
    queued = Push.objects.create(patient=patient.patient, partner=partner, total=3, requested_by=patient)
    sent = Push.objects.create(patient=patient.patient, partner=partner, total=1, sent=1, status="sent")
    with django_capture_on_commit_callbacks(execute=True):
        assert "stopped" in _run("--revoke", str(queued.pk), "--kind", "push", "--reason", "Sent to the wrong hospital")
    queued.refresh_from_db()
    assert queued.status == "failed" and queued.error == "Stopped by the privacy office: Sent to the wrong hospital"
    assert [m.to for m in mail.outbox] == [[patient.email]] and "Sent to the wrong hospital" in mail.outbox[0].body
    with pytest.raises(CommandError, match="cannot be taken back"):
        _run("--revoke", str(sent.pk), "--kind", "push", "--reason", "x")
    with pytest.raises(CommandError, match="No push"):
        _run("--revoke", "987654", "--kind", "push", "--reason", "x")
    assert Push.objects.get(pk=sent.pk).status == "sent"

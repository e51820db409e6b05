"""manage.py export_studies: the privacy office answers a paper request with the same packaging."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AccessEvent
from tests.exports.conftest import header_texts, make_study, open_with_7z, verify_archive

pytestmark = pytest.mark.django_db

PASSPHRASE = "maple-orbit-lantern-velvet-cactus-harbor"


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "pass.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


def test_exports_chosen_studies_and_logs_the_privacy_office(patient, tmp_path, passphrase_file, capsys):
    wanted = make_study(patient, tmp_path / "a", slices=2)
    make_study(patient, tmp_path / "b", slices=1)
    out = tmp_path / "paper.zip"
    call_command("export_studies", "--mrn", patient.patient.mrn, "--out", str(out), "--passphrase-file",
                 str(passphrase_file), "--study", wanted.study_uid, "--deidentify", "--actor", "officer@example.org")
    assert "2 files" in capsys.readouterr().out
    assert open_with_7z(out, PASSPHRASE, tmp_path / "x").returncode == 0
    manifest = verify_archive(tmp_path / "x", [wanted], deidentified=True)
    assert all(patient.patient.mrn not in "\n".join(header_texts(tmp_path / "x" / f["path"]))
               for f in manifest["files"] if f["path"].startswith("DICOM"))
    event = AccessEvent.objects.get(patient=patient.patient, action="export")
    assert (event.actor_type, event.purpose, event.actor_name) == ("privacy_office", "patient_request", "officer@example.org")
    # The row reads as it always has: the hospital's privacy officer, no account reference, no
    # browser, and the details of the paper request.
    assert (event.organization, event.role, event.actor_ref, event.source, event.ip, event.user_agent) == (
        settings.HOSPITAL_NAME, "Privacy officer", "", "portal", None, "")
    assert event.study == wanted
    assert event.details == {"channel": "paper", "studies": 1, "deidentified": True, "sha256": event.details["sha256"]}
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("problem", ["mrn", "study", "exists", "short", "missing-file"])
def test_bad_input_is_a_clear_error(patient, other_patient, tmp_path, passphrase_file, problem):
    make_study(patient, tmp_path / "a", slices=1)
    theirs = make_study(other_patient, tmp_path / "o", slices=1)
    out = tmp_path / "out.zip"
    args = ["--mrn", patient.patient.mrn, "--out", str(out), "--passphrase-file", str(passphrase_file)]
    if problem == "mrn":
        args[1] = "NOPE"
    elif problem == "study":
        args += ["--study", theirs.study_uid]
    elif problem == "exists":
        out.write_bytes(b"")
    elif problem == "short":
        passphrase_file.write_text("short\n")
    else:
        args[5] = str(tmp_path / "none.txt")
    with pytest.raises(CommandError):
        call_command("export_studies", *args)
    assert AccessEvent.objects.filter(action="export").count() == 0


def test_without_a_name_the_row_says_privacy_office(patient, tmp_path, passphrase_file):
    make_study(patient, tmp_path / "a", slices=1)
    call_command("export_studies", "--mrn", patient.patient.mrn, "--out", str(tmp_path / "p.zip"),
                 "--passphrase-file", str(passphrase_file))
    event = AccessEvent.objects.get(patient=patient.patient, action="export")
    assert (event.actor_type, event.actor_name, event.purpose) == ("privacy_office", "Privacy office", "patient_request")


def test_the_service_refuses_an_actor_that_does_not_reach_the_patient(patient, other_patient, tmp_path):
    from django.core.exceptions import PermissionDenied

    from core.actor import Actor, Kind
    from exports import services

    study = make_study(patient, tmp_path / "a", slices=1)
    officer = Actor(kind=Kind.PRIVACY_OFFICER, name="officer@example.org", role="Privacy officer")
    for actor in (officer, officer.investigating(other_patient.patient.pk)):
        with pytest.raises(PermissionDenied):
            services.export_for_paper_request(actor=actor, patient=patient.patient, studies=[study], deidentify=False,
                                              passphrase=PASSPHRASE, out=tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
    assert AccessEvent.objects.filter(action="export").count() == 0

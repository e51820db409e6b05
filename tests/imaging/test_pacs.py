"""PACS sync against a real Orthanc (Debian packages orthanc + orthanc-dicomweb)."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Count

from accounts.services import activation_code_issue, patient_account_activate
from audit.models import AccessEvent
from imaging import storage
from imaging.dicom.synth import new_uid
from imaging.models import Instance, IntegrityAlert, PacsInstance, PacsPatientSync, PacsSyncRun, Study
from imaging.pacs.sync import pacs_sync
from imaging.selectors import pacs_fetch_progress
from imaging.tasks import pacs_fetch_patient
from tests.conftest import WorkerProcess, login_verified, wait_for
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory, actor_of
from tests.imaging.conftest import SAMPLES
from tests.imaging.helpers import importer
from tests.imaging.orthanc import Orthanc, available
from tests.imaging.test_import_batches import incoming_left

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    reason = available()
    if reason:
        pytest.fail(f"{reason}; `make test` installs it")
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture
def pacs(orthanc, settings) -> Orthanc:
    """An empty Orthanc, configured as this test's PACS."""
    orthanc.clear()
    settings.PACS_DICOMWEB_URL = orthanc.dicomweb_url
    settings.PACS_USERNAME = ""
    settings.PACS_DEFAULT_ISSUER = "LOCAL"
    settings.PACS_THROTTLE_MS = 0
    settings.PACS_HTTP_ATTEMPTS = 1  # the client's own quick retries would only slow the failure tests
    settings.ADMINS = [("Ops", "ops@example.org")]
    return orthanc


def dicom(patient_id: str, issuer: str | None, study_uid: str, *, sample: str = "CT_small.dcm",
          series_uid: str | None = None, sop_uid: str | None = None, **changes: object) -> bytes:
    """A pydicom sample file re-identified as (patient_id, issuer) in the given study."""
    ds = pydicom.dcmread(SAMPLES / sample)
    ds.PatientID = patient_id
    if issuer is None:
        if "IssuerOfPatientID" in ds:
            del ds.IssuerOfPatientID
    else:
        ds.IssuerOfPatientID = issuer
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or new_uid()
    ds.SOPInstanceUID = sop_uid or new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in changes.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def load_study(pacs: Orthanc, patient_id: str, issuer: str | None, *, instances: int = 2,
               sample: str = "CT_small.dcm") -> tuple[str, list[str]]:
    study_uid, series_uid = new_uid(), new_uid()
    sops = []
    for number in range(instances):
        sop = new_uid()
        pacs.upload(dicom(patient_id, issuer, study_uid, sample=sample, series_uid=series_uid, sop_uid=sop,
                          InstanceNumber=str(number + 1)))
        sops.append(sop)
    return study_uid, sops


def activated(issuer: str, mrn: str):
    user = UserFactory()
    AuthenticatorAppFactory(user=user)
    return PatientFactory(issuer=issuer, mrn=mrn, user=user)


def ingest_events() -> dict[str, int]:
    return dict(
        AccessEvent.objects.filter(action="ingest").values_list("study__study_uid").annotate(n=Count("pk"))
    )


@pytest.mark.django_db
def test_sync_imports_exactly_the_activated_patients_studies_byte_identical(pacs):
    alice = activated("HOSP", "A100")
    activated("LOCAL", "B200")
    PatientFactory(issuer="HOSP", mrn="C300")  # never activated
    a1, a1_sops = load_study(pacs, "A100", "HOSP", instances=3)
    a2, _ = load_study(pacs, "A100", "HOSP", instances=1, sample="MR_small.dcm")
    # The PACS stores no issuer: taken as PACS_DEFAULT_ISSUER (LOCAL), so it is B200's.
    b1, _ = load_study(pacs, "B200", None, instances=2)
    load_study(pacs, "C300", "HOSP")  # not activated
    load_study(pacs, "A100", "OTHER")  # same number, another assigning authority
    load_study(pacs, "A100", None)  # no issuer on the PACS, and alice is not of LOCAL

    out = io.StringIO()
    call_command("sync_pacs", stdout=out)
    assert "imported 6" in out.getvalue()

    assert set(Study.objects.values_list("study_uid", flat=True)) == {a1, a2, b1}
    assert set(Study.objects.filter(patient=alice).values_list("study_uid", flat=True)) == {a1, a2}
    assert Instance.objects.count() == 6
    for instance in Instance.objects.all():
        with storage.open_stored(instance.storage_path) as fh:
            assert fh.read() == pacs.file(pacs.find_instance(instance.sop_uid))
    assert ingest_events() == {a1: 1, a2: 1, b1: 1}
    assert PacsSyncRun.objects.get().status == "ok"
    state = PacsPatientSync.objects.get(patient=alice)
    assert (state.status, state.studies_done, state.studies_total, state.instances_done) == ("done", 2, 2, 4)
    assert pacs_fetch_progress(actor=actor_of(alice.user)) is None

    again = pacs_sync(actor=importer())
    assert (again.fetched, again.imported) == (0, 0)
    assert Instance.objects.count() == 6
    assert ingest_events() == {a1: 1, a2: 1, b1: 1}


@pytest.mark.django_db
def test_a_changed_instance_on_the_pacs_is_an_integrity_conflict(pacs):
    activated("HOSP", "A100")
    study_uid, sops = load_study(pacs, "A100", "HOSP", instances=2)
    pacs_sync(actor=importer())
    original = Instance.objects.get(sop_uid=sops[0])
    original_bytes = storage.open_stored(original.storage_path).read()

    # The archive's copy is replaced: same SOP Instance UID, different header.
    orthanc_id = pacs.find_instance(sops[0])
    series_uid = original.series.series_uid
    pacs.delete_instance(orthanc_id)
    pacs.upload(dicom("A100", "HOSP", study_uid, series_uid=series_uid, sop_uid=sops[0],
                      InstanceNumber="1", InstitutionName="Somewhere Else"))

    result = pacs_sync(actor=importer())
    assert (result.fetched, result.conflict, result.imported) == (1, 1, 0)
    alert = IntegrityAlert.objects.get()
    assert (alert.instance_id, alert.kind) == (original.pk, "conflict")
    original.refresh_from_db()
    assert storage.open_stored(original.storage_path).read() == original_bytes  # kept, not overwritten
    assert Instance.objects.count() == 2

    again = pacs_sync(actor=importer())
    assert again.fetched == 0
    assert IntegrityAlert.objects.count() == 1


def _sync_subprocess(data_dir: Path, url: str) -> subprocess.Popen:
    db = django_settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        # Its own data dir (so its storage is this test's), with the test run's keys.
        "LIGHTBOX_DATA_DIR": str(data_dir),
        "PACS_DICOMWEB_URL": url,
        # Slow enough that the kill lands between studies; pacing is a real PACS setting.
        "PACS_THROTTLE_MS": "150",
        # Where a killed run's downloads stayed for good before they moved into the store's
        # swept .incoming folder: this test's tmp, so the test sees them.
        "TMPDIR": str(data_dir),
    })
    return subprocess.Popen([sys.executable, "manage.py", "sync_pacs"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_sync_killed_half_way_resumes_without_duplicates(pacs, transactional_db, tmp_path, dicom_storage):
    activated("HOSP", "A100")
    activated("HOSP", "B200")
    studies = [load_study(pacs, mrn, "HOSP", instances=3)[0] for mrn in ("A100", "A100", "B200", "B200", "B200")]
    total = 15
    shutil.copytree(django_settings.KEYS_DIR, tmp_path / "keys")
    assert dicom_storage == tmp_path / "storage"

    proc = _sync_subprocess(tmp_path, pacs.dicomweb_url)
    try:
        wait_for(lambda: proc.poll() is not None or Instance.objects.exists(), timeout=60, interval=0.02,
                 what="the first imported instance")
        proc.send_signal(signal.SIGKILL)
    finally:
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output
    assert 0 < Instance.objects.count() < total

    call_command("sync_pacs", stdout=io.StringIO())

    # Nothing the killed run downloaded is left behind: not in the temporary folder, and its run
    # folder in the store was swept by the second run's import.
    assert list(tmp_path.glob("lightbox-pacs-*")) == []
    assert incoming_left(dicom_storage) == []

    assert Instance.objects.count() == total
    assert Instance.objects.values("sop_uid").distinct().count() == total
    assert PacsInstance.objects.count() == total
    assert set(Study.objects.values_list("study_uid", flat=True)) == set(studies)
    # A study is imported in one transaction with its event: exactly one each, across both runs.
    assert ingest_events() == {uid: 1 for uid in studies}
    for instance in Instance.objects.all():
        with storage.open_stored(instance.storage_path) as fh:
            assert fh.read() == pacs.file(pacs.find_instance(instance.sop_uid))
    assert pacs_sync(actor=importer()).fetched == 0


@pytest.mark.django_db
def test_pacs_down_fails_clearly_and_shows_on_healthz_without_503(pacs, settings, client):
    activated("HOSP", "A100")
    settings.PACS_DICOMWEB_URL = "http://127.0.0.1:9/dicom-web"  # discard port: nothing listens
    with pytest.raises(CommandError, match="cannot be reached"):
        call_command("sync_pacs", stdout=io.StringIO())
    run = PacsSyncRun.objects.get()
    assert run.status == "failed"

    response = client.get("/healthz")
    assert response.status_code == 200  # a PACS problem never makes the portal look down
    body = response.json()
    assert body["pacs"]["ok"] is False
    assert body["pacs"]["last_error"] == "The PACS cannot be reached."
    assert body["pacs"]["last_sync_at"] is None


@pytest.mark.django_db
def test_sync_pacs_without_configuration_is_a_clear_error(settings):
    settings.PACS_DICOMWEB_URL = ""
    with pytest.raises(CommandError, match="PACS_DICOMWEB_URL"):
        call_command("sync_pacs")


@pytest.mark.django_db
def test_task_retries_with_backoff_then_tells_the_administrators(pacs, settings):
    patient = activated("HOSP", "A100")
    settings.PACS_DICOMWEB_URL = "http://127.0.0.1:9/dicom-web"
    assert pacs_fetch_patient.autoretry_for and pacs_fetch_patient.retry_backoff
    # Eager apply runs the retries in-process (countdowns are not waited for).
    result = pacs_fetch_patient.apply(args=[patient.pk])
    assert result.failed()
    assert PacsSyncRun.objects.filter(status="failed").count() == pacs_fetch_patient.max_retries + 1
    assert len(mail.outbox) == 1
    assert "PACS sync failed" in mail.outbox[0].subject
    assert patient.name not in mail.outbox[0].body and patient.mrn not in mail.outbox[0].body
    assert PacsPatientSync.objects.get(patient=patient).status == "failed"


@pytest.mark.django_db
def test_a_bad_file_on_the_pacs_is_rejected_and_reported(pacs):
    activated("HOSP", "A100")
    study_uid, _ = load_study(pacs, "A100", "HOSP", instances=1)
    # An image with zero rows: Orthanc stores it, the import's parser refuses it.
    pacs.upload(dicom("A100", "HOSP", study_uid, Rows=0))
    result = pacs_sync(actor=importer())
    assert (result.imported, result.rejected) == (1, 1)
    assert PacsSyncRun.objects.get().rejected == 1
    # The rejected file is not recorded as done, so the next run tries it again.
    assert pacs_sync(actor=importer()).fetched == 1


@pytest.mark.django_db
def test_activation_queues_the_fetch_and_home_shows_progress(pacs, client, django_capture_on_commit_callbacks):
    patient = PatientFactory(issuer="HOSP", mrn="A100")
    load_study(pacs, "A100", "HOSP", instances=2)
    user = UserFactory()
    AuthenticatorAppFactory(user=user)
    code = activation_code_issue(patient=patient)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        patient_account_activate(user=user, code=code, birth_date=patient.birth_date)
    assert len(callbacks) == 1
    assert PacsPatientSync.objects.get(patient=patient).status == "pending"

    login_verified(client, user)
    response = client.get("/")
    assert response.status_code == 200
    assert "Fetching your images" in response.content.decode()

    # What the queued callback runs, executed here by the task body itself.
    assert pacs_fetch_patient.apply(args=[patient.pk]).get()["imported"] == 2
    response = client.get("/")
    assert "Fetching your images" not in response.content.decode()
    assert Study.objects.filter(patient=patient).count() == 1


@pytest.mark.django_db
def test_activation_without_a_pacs_queues_nothing(settings, django_capture_on_commit_callbacks):
    settings.PACS_DICOMWEB_URL = ""
    patient = PatientFactory()
    user = UserFactory()
    code = activation_code_issue(patient=patient)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        patient_account_activate(user=user, code=code, birth_date=patient.birth_date)
    assert callbacks == []
    assert not PacsPatientSync.objects.exists()


@pytest.fixture
def pacs_worker(pacs, transactional_db, tmp_path, monkeypatch, dicom_storage):
    """A real Celery worker configured for the test PACS, storing into this test's storage."""
    shutil.copytree(django_settings.KEYS_DIR, tmp_path / "keys")
    assert dicom_storage == tmp_path / "storage"
    monkeypatch.setenv("PACS_DICOMWEB_URL", pacs.dicomweb_url)
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path))
    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def test_a_newly_activated_patient_is_fetched_in_the_background(pacs, pacs_worker, client):
    patient = PatientFactory(issuer="HOSP", mrn="A100")
    study_uid, _ = load_study(pacs, "A100", "HOSP", instances=2)
    user = UserFactory()
    AuthenticatorAppFactory(user=user)
    code = activation_code_issue(patient=patient)
    with transaction.atomic():
        patient_account_activate(user=user, code=code, birth_date=patient.birth_date)

    wait_for(lambda: PacsPatientSync.objects.filter(patient=patient, status="done").exists(),
             what="the background fetch")
    assert list(Study.objects.filter(patient=patient).values_list("study_uid", flat=True)) == [study_uid]
    assert Instance.objects.count() == 2
    assert ingest_events() == {study_uid: 1}
    login_verified(client, user)
    assert "Fetching your images" not in client.get("/").content.decode()


# --- Shape: the sync's reads are selectors, pydicom stays in imaging.dicom -----------------------


def test_only_imaging_dicom_imports_pydicom():
    import ast

    offenders = []
    for path in (ROOT / "imaging").rglob("*.py"):
        if "dicom" in path.relative_to(ROOT / "imaging").parts[:1] or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] == "pydicom" for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_patient_identity_reads_the_files_own_header(tmp_path):
    from imaging.dicom import parse, synth

    path = synth.write_instance(tmp_path / "one.dcm", patient_id="A100", issuer="HOSP")
    assert parse.patient_identity(path) == ("A100", "HOSP")
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a DICOM file at all")
    assert parse.patient_identity(broken) in (None, ("", ""))


@pytest.mark.django_db
def test_sync_selectors_stay_within_the_actors_reach(tmp_path):
    from imaging.selectors import pacs_known_instances, pacs_sync_patients

    alice = activated("HOSP", "A100")
    bob = activated("HOSP", "B200")
    PatientFactory(issuer="HOSP", mrn="C300")  # never activated
    assert pacs_sync_patients(actor=importer()) == [alice, bob]
    assert pacs_sync_patients(actor=importer(), patient_ids=[bob.pk]) == [bob]
    assert pacs_sync_patients(actor=actor_of(alice.user)) == [alice]
    PacsInstance.objects.create(patient=bob, study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4",
                                metadata_sha256="f" * 64, outcome="imported", fetched_at=dt.datetime.now(dt.UTC))
    assert pacs_known_instances(actor=importer(), sop_uids=["1.2.3.4", "9.9"]) == {"1.2.3.4": "f" * 64}
    assert pacs_known_instances(actor=actor_of(alice.user), sop_uids=["1.2.3.4"]) == {}

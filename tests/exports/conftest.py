"""Helpers for the export tests: real studies through ingest, archives opened with 7-Zip."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydicom.fileset import FileSet

from core.actor import Actor
from core.signing import public_key_pem
from imaging.dicom import synth
from imaging.models import Instance, Study
from imaging.services.ingest import IMPORTER_NAME, dicom_import
from imaging.storage import open_stored
from portal.celery import app as celery_app

# What a de-identified archive must not carry anywhere in its headers.
FAMILY, GIVEN = "Quixotewell", "Ermintrude"
BIRTH = dt.date(1961, 7, 14)
ADDRESS = "17 Larkspur Crescent, Upper Wexmoor"
REFERRING = "Vandersloot^Hieronymus^^Dr"
PERFORMING = "Okonkwo-Blythe^Seraphina"
INSTITUTION_ADDRESS = "1 Infirmary Row, Wexmoor"


def identity(patient_id: str) -> synth.Identity:
    return synth.Identity(FAMILY, GIVEN, patient_id, "STEXAMPLE", BIRTH, "F")


def make_study(user, folder: Path, *, slices: int = 3, burned_in: bool = False, patient_id: str | None = None,
               size: int = 64) -> Study:
    """A generated CT with identifying headers, imported through the ingest service and given to
    ``user``'s patient record."""
    header = synth.StudyHeader(
        description="CT CHEST", date=dt.date(2024, 3, 5), time=dt.time(9, 30), institution="St. Example Hospital",
        referring_physician=REFERRING, accession="ACC" + uuid.uuid4().hex[:8].upper(), modality="CT",
        performing_physician=PERFORMING, institution_address=INSTITUTION_ADDRESS, operator="Tech^Tina",
    )
    pid = patient_id or "PID" + uuid.uuid4().hex[:10].upper()
    with synth.warnings_suppressed():
        paths = synth.write_ct_series(folder, identity(pid), header, slices=slices, size=size)
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.PatientAddress = ADDRESS
            ds.OtherPatientIDs = pid + "-OLD"
            ds.BurnedInAnnotation = "YES" if burned_in else "NO"
            ds.save_as(path, enforce_file_format=True)
    summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[str(p) for p in paths])
    assert summary.rejected == 0, summary.as_dict()
    study = Study.objects.get(study_uid=summary.studies[0])
    Study.objects.filter(pk=study.pk).update(patient=user.patient)
    study.refresh_from_db()
    return study


def open_with_7z(archive: Path, passphrase: str, dest: Path) -> subprocess.CompletedProcess:
    """Extract exactly as a patient would on Linux."""
    return subprocess.run(["7z", "x", f"-p{passphrase}", f"-o{dest}", "-y", str(archive)],
                          capture_output=True, text=True, timeout=120, check=False)


def encryption_methods(archive: Path, passphrase: str) -> set[str]:
    listing = subprocess.run(["7z", "l", "-slt", f"-p{passphrase}", str(archive)], capture_output=True, text=True,
                             check=True).stdout
    return set(re.findall(r"^Method = (.+)$", listing, re.M))


def verify_archive(root: Path, studies: list[Study], *, deidentified: bool) -> dict:
    """Every check a careful patient could make; returns the manifest."""
    manifest_bytes = (root / "MANIFEST.json").read_bytes()
    signature = (root / "MANIFEST.sig").read_bytes()
    load_pem_public_key(public_key_pem()).verify(signature, manifest_bytes)  # raises if forged
    manifest = json.loads(manifest_bytes)
    assert manifest["deidentified"] is deidentified
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(listed) | {"MANIFEST.json", "MANIFEST.sig"}
    for path, entry in listed.items():
        data = (root / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        assert len(data) == entry["size"]
        assert re.fullmatch(r"DICOM/ST\d{4}/SE\d{4}/IM\d{6}|DICOMDIR|README\.txt", path)
    instances = list(Instance.objects.filter(series__study__in=studies))
    dicom_entries = [f for f in manifest["files"] if f["path"].startswith("DICOM/")]
    assert len(dicom_entries) == len(instances)
    if not deidentified:
        by_uid = {i.sop_uid: i for i in instances}
        for entry in dicom_entries:
            original = by_uid[entry["sop_instance_uid"]]
            assert entry["sha256"] == original.sha256
            with open_stored(original.storage_path) as fh:
                assert (root / entry["path"]).read_bytes() == fh.read()
    # The DICOMDIR indexes every file, as a viewer would read it.
    fileset = FileSet(pydicom.dcmread(root / "DICOMDIR"))
    indexed = {inst.SOPInstanceUID: Path(inst.path).relative_to(root.resolve()).as_posix() for inst in fileset}
    assert indexed == {e["sop_instance_uid"]: e["path"] for e in dicom_entries}
    return manifest


def header_texts(path: Path) -> list[str]:
    """Every text value in a file's header (and nested sequences), file meta included."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    texts: list[str] = []

    def walk(dataset):
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)
            elif element.VR not in ("OB", "OW", "OF", "OD", "UN") and element.value is not None:
                texts.append(str(element.value))

    walk(ds.file_meta)
    walk(ds)
    return texts


@pytest.fixture
def exports_dir(settings, tmp_path) -> Path:
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR


@contextlib.contextmanager
def broker_down():
    """Point this process's Celery publisher at a port where nothing listens (an outage)."""
    original = celery_app.conf.broker_write_url

    def reset_pools():
        # The publisher caches its connection pools; drop them so the new URL takes effect.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    celery_app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    reset_pools()
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = original
        reset_pools()

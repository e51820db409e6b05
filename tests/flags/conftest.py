from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from audit.services import record_access
from imaging.models import Instance, Series, Study
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory

_uid = itertools.count(1)


@pytest.fixture(autouse=True)
def dicom_storage(settings, tmp_path):
    """DICOM storage in this test's own directory (the integrity re-check reads it)."""
    options = {"location": str(tmp_path / "storage"), "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750}
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
        "renders": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
    }
    return tmp_path / "storage"


def make_study(patient_record, *, description: str = "CT chest", with_instance: bool = False) -> Study:
    n = next(_uid)
    study = Study.objects.create(
        patient=patient_record, study_uid=f"1.2.826.0.1.3680043.99.{n}", study_date=dt.date(2025, 3, 14),
        modalities="CT", description=description, institution="St. Example Hospital",
    )
    if with_instance:
        series = Series.objects.create(study=study, series_uid=f"1.2.826.0.1.3680043.99.{n}.1", modality="CT", number=1)
        # A row whose file is not in storage: the re-check finds it missing and raises an alert.
        Instance.objects.create(
            series=series, sop_uid=f"1.2.826.0.1.3680043.99.{n}.1.1", sop_class="1.2.840.10008.5.1.4.1.1.2",
            transfer_syntax="1.2.840.10008.1.2.1", size=10, sha256="a" * 64, storage_path=f"dicom/aa/aa/{'a' * 64}.dcm",
        )
    return study


def make_event(patient_record, *, study=None, organization: str = "Acme AI Ltd", actor_type: str = "ai_vendor",
               purpose: str = "ai_training", when=None, actor_ref: str = "acme-pipeline"):
    return record_access(
        patient=patient_record, study=study, action="view", purpose=purpose, actor_type=actor_type,
        actor_name="Acme pipeline", actor_ref=actor_ref, organization=organization, source="api",
        occurred_at=when or timezone.now() - dt.timedelta(days=3),
    )


@pytest.fixture
def study(patient) -> Study:
    return make_study(patient.patient)


@pytest.fixture
def event(patient, study):
    return make_event(patient.patient, study=study)


@pytest.fixture
def second_officer(db) -> User:
    user = UserFactory(role=User.Role.PRIVACY_OFFICER)
    AuthenticatorAppFactory(user=user)
    return user


@pytest.fixture
def officer_client(officer) -> Client:
    return login_verified(Client(), officer)

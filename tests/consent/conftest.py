"""Fixtures for consent: a published policy, studies of the patient, service tokens."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from accounts.services import service_account_create
from consent.models import ConsentPolicy
from consent.services import consent_policy_publish
from imaging.models import Patient, Study

_numbers = itertools.count(1)


def make_study(patient: Patient, description: str = "CT chest") -> Study:
    n = next(_numbers)
    return Study.objects.create(
        patient=patient, study_uid=f"1.2.826.0.1.3680043.10.77.{n}", description=description,
        study_date=dt.date(2025, 1, 1) + dt.timedelta(days=n), modalities="CT",
    )


@pytest.fixture
def policy(db) -> ConsentPolicy:
    return consent_policy_publish(version=1, text="Version one of the policy.", effective_from=timezone.now() - dt.timedelta(days=30))


@pytest.fixture
def studies(patient) -> list[Study]:
    return [make_study(patient.patient, "CT chest"), make_study(patient.patient, "MR brain")]


@pytest.fixture
def other_study(other_patient) -> Study:
    return make_study(other_patient.patient, "XR hand")


@pytest.fixture
def ai_token(db) -> str:
    _, token = service_account_create(name="acme-pipeline", organization="Acme AI Triage", scopes=["consent:read"], actor_type="ai_vendor")
    return token


@pytest.fixture
def audit_token(db) -> str:
    _, token = service_account_create(name="mercy-pacs", organization="Mercy Hospital", scopes=["audit:write"])
    return token

"""Fixtures for the access log: patient records, studies and ready-made chains."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction

from audit.models import AccessEvent
from audit.services import record_access
from imaging.models import Patient, Study
from tests.factories import PatientFactory

_study_numbers = itertools.count(1)


def make_study(patient: Patient) -> Study:
    return Study.objects.create(patient=patient, study_uid=f"1.2.826.0.1.3680043.10.99.{next(_study_numbers)}")


@contextlib.contextmanager
def held_elsewhere(take: Callable[[], object], *, seconds: float = 60) -> Iterator[None]:
    """``take()`` on another database connection (a thread, in a transaction), which keeps what
    it took (row locks, advisory locks) until the block ends or ``seconds`` pass; then it commits
    and closes."""
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                take()
                locked.set()
                release.wait(timeout=seconds)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)
            locked.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(timeout=30) and not failure, failure
    try:
        yield
    finally:
        release.set()
        holder.join(timeout=30)
    assert not failure, failure


def clinician_view(patient: Patient, **overrides) -> AccessEvent:
    """One ordinary event, as an EHR would report a radiologist opening a study."""
    fields = {
        "patient": patient,
        "action": "view",
        "purpose": "treatment",
        "actor_type": "clinician",
        "actor_name": "Dr. Ada Reyes",
        "actor_ref": "ehr:prac-77",
        "organization": "St. Example Hospital",
        "role": "Radiologist",
        "source": "api",
    }
    fields.update(overrides)
    return record_access(**fields)


@pytest.fixture
def record(db) -> Patient:
    """A patient record with no access events yet."""
    return PatientFactory()


@pytest.fixture
def other_record(db) -> Patient:
    return PatientFactory()


@pytest.fixture
def make_chain(db) -> Callable[..., list[AccessEvent]]:
    """``make_chain(patient, n)`` appends n varied events and returns them in seq order."""

    def make(patient: Patient, n: int) -> list[AccessEvent]:
        return [clinician_view(patient, details={"n": i}, ip=f"198.51.100.{i + 1}") for i in range(n)]

    return make

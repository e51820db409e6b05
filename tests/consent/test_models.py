"""Decisions are append-only in the database: UPDATE and DELETE are refused by a trigger."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from consent import triggers
from consent.models import ConsentDecision
from consent.services import _write_decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def decision(patient, policy) -> ConsentDecision:
    return _write_decision(
        patient=patient.patient, scope="research", decision="granted", study=None, policy=policy, actor=patient,
        channel="portal", kind="change", recorded_by="patient",
    )


def test_triggers_are_installed():
    assert triggers.installed(connection)


def test_update_is_refused(decision):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentDecision.objects.filter(pk=decision.pk).update(decision="refused")
    decision.refresh_from_db()
    assert decision.decision == "granted"


def test_save_of_an_existing_row_is_refused(decision):
    decision.decision = "refused"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        decision.save()


def test_delete_is_refused(decision):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentDecision.objects.filter(pk=decision.pk).delete()
    assert ConsentDecision.objects.filter(pk=decision.pk).exists()


def test_raw_sql_update_is_refused_too(decision):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE consent_consentdecision SET decision = 'refused' WHERE id = %s", [decision.pk])

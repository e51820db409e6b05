"""The patient record's link to an account is imaging's to write (imaging/services/patients.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from imaging.models import Patient
from imaging.services.patients import patient_account_link
from tests.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_record_is_linked_once_and_never_moved_to_another_account():
    record = PatientFactory(user=None)
    first, second = UserFactory(), UserFactory()
    patient_account_link(patient=record, user_id=first.pk)
    assert Patient.objects.get(pk=record.pk).user_id == first.pk
    patient_account_link(patient=record, user_id=first.pk)  # the same account again: a no-op
    with pytest.raises(ValidationError):
        patient_account_link(patient=record, user_id=second.pk)
    assert Patient.objects.get(pk=record.pk).user_id == first.pk

"""The patient record's link to a user account."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from imaging.models import Patient


@transaction.atomic
def patient_account_link(*, patient: Patient, user_id: int) -> Patient:
    """Link ``patient``'s record to the account ``user_id``, once.

    Callers: ``accounts.services.patient_account_activate``, when a patient signs up with a valid
    activation code (the code's own checks, and its row lock, come first). The record's row is
    locked, and a record already linked to another account raises ``ValidationError``: a record
    belongs to one account, and re-linking is not something signup may do. Not audited as an
    access: the account now owns the record; the activation itself is the accounts app's record.
    """
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    if locked.user_id not in (None, user_id):
        raise ValidationError("This patient record is already linked to another account.")
    if locked.user_id is None:
        locked.user_id = user_id
        locked.save(update_fields=["user"])
    patient.user_id = user_id
    return locked

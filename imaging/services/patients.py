"""The patient record's link to a user account: made once at activation
(``patient_account_link``), moved only with a reason on the patient's log
(``patient_account_relink``)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from core import access_log
from core.actor import Actor, Kind
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


# A reason someone reading the patient's log later can act on ("ticket 4411: code given to the
# wrong person"), not "fix": at least this many characters.
RELINK_REASON_MIN_LENGTH = 10


@transaction.atomic
def patient_account_relink(*, actor: Actor, patient: Patient, user, reason: str) -> int | None:
    """Move ``patient``'s record to the patient account ``user``, for ``reason``; return the id of
    the account that held it before (None if none did).

    Who may: a command or task run by the hospital (``Actor.system``; ``relink_patient``) or a
    privacy officer, who must have re-entered their password recently (docs/security.md §6).
    Administrators, patients and API tokens are refused (``PermissionDenied``): administrators run
    the service, not patients' records, and the admin no longer offers the field.

    Raises ``ValidationError`` (nothing changed) for a reason shorter than
    ``RELINK_REASON_MIN_LENGTH``, an account that is not an active patient account, the account
    already holding this record, or one holding another record. The record's row is locked first,
    then the access log's chain (``access_log.record``), the order every writer takes. Records one
    access event on the patient's log, which the patient sees: modify, purpose operations, the
    reason and both account ids in its details. The previous account loses the record at once:
    every request builds its Actor from the link (``portal.actors``); ending its sessions is the
    caller's (accounts owns them: ``accounts.services.patient_record_move``).
    """
    if actor.kind not in (Kind.SYSTEM, Kind.PRIVACY_OFFICER):
        raise PermissionDenied("Only the privacy office or a hospital command may move a record to another account.")
    actor.require_recent_reauthentication()
    reason = " ".join(reason.split())
    if len(reason) < RELINK_REASON_MIN_LENGTH:
        raise ValidationError(
            f"Give the reason (at least {RELINK_REASON_MIN_LENGTH} characters): it is written on the patient's access log."
        )
    # Duck-typed: imaging does not import accounts (a lower layer); the field is accounts.User.role.
    if getattr(user, "role", None) != "patient" or not user.is_active:
        raise ValidationError("The new account must be an active patient account.")
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    previous = locked.user_id
    if previous == user.pk:
        raise ValidationError("This record already belongs to that account.")
    if Patient.objects.filter(user_id=user.pk).exists():
        raise ValidationError("That account already holds another patient record.")
    locked.user_id = user.pk
    locked.full_clean()
    locked.save(update_fields=["user"])
    patient.user_id = user.pk
    on_record = actor.investigating(locked.pk) if actor.is_officer else actor
    access_log.record(
        actor=on_record, patient=locked, action="modify", purpose="operations",
        details={"change": "account_relink", "reason": reason, "from_account": previous, "to_account": user.pk},
    )
    return previous

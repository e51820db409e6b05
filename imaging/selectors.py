from __future__ import annotations

from imaging.models import Patient


def patient_for_user(user) -> Patient | None:
    """The Patient record linked to ``user``, or None (officers and admins have none)."""
    return Patient.objects.filter(user=user).first()

"""What the hospital's commands share: finding the one patient record an MRN names."""

from __future__ import annotations

from django.core.management.base import CommandError

from imaging.models import Patient


def patient_by_mrn(mrn: str, issuer: str | None) -> Patient:
    """The one record with this MRN (narrowed by issuer); a CommandError that says what to do
    when there is none or several. Names no patient: the MRN is what the caller typed."""
    patients = Patient.objects.filter(mrn=mrn)
    if issuer:
        patients = patients.filter(issuer=issuer)
    found = list(patients[:2])
    if not found:
        raise CommandError(f"No patient with MRN {mrn}" + (f" and issuer {issuer}" if issuer else "") + ".")
    if len(found) > 1:
        raise CommandError(f"MRN {mrn} exists under several issuers; pass --issuer.")
    return found[0]

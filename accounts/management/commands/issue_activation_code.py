from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.services import activation_code_issue
from imaging.management.patients import patient_by_mrn


class Command(BaseCommand):
    help = "Issue a single-use activation code for a patient record and print it (once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("mrn", help="The patient's medical record number.")
        parser.add_argument("--issuer", help="Assigning authority, when the MRN exists under several issuers.")

    def handle(self, *args, mrn: str, issuer: str | None, **options) -> None:
        patient = patient_by_mrn(mrn, issuer)
        if patient.user_id:
            raise CommandError(f"Patient {patient} already has an account.")
        code = activation_code_issue(patient=patient)
        self.stdout.write(code)

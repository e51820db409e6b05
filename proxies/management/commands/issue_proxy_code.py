from __future__ import annotations

from django.core.management.base import BaseCommand

from imaging.management.patients import patient_by_mrn
from proxies.models import Relationship, Scope
from proxies.services import proxy_code_issue


class Command(BaseCommand):
    help = (
        "Issue a single-use proxy code for a patient record (a parent, guardian or caregiver enters it "
        "with the patient's date of birth) and print it, once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("mrn", help="The patient's medical record number.")
        parser.add_argument("--issuer", help="Assigning authority, when the MRN exists under several issuers.")
        parser.add_argument("--relationship", required=True, choices=Relationship.values)
        parser.add_argument("--scope", default=Scope.VIEW, choices=Scope.values)
        parser.add_argument("--expires-days", type=int, default=None, help="Days the code stays usable (default: as activation codes).")

    def handle(self, *args, mrn: str, issuer: str | None, relationship: str, scope: str, expires_days: int | None, **options) -> None:
        patient = patient_by_mrn(mrn, issuer)
        self.stdout.write(proxy_code_issue(patient=patient, relationship=relationship, scope=scope, expires_days=expires_days))

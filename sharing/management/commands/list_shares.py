"""``manage.py list_shares --mrn MRN``: a patient's shares, for the privacy office.

Today the pushes to partner hospitals; share links will be listed here too. Reads through the
sharing selectors as the system actor narrowed by the command to one patient. Records nothing:
it lists who the patient's data was sent to (no clinical data), and the shares themselves are in
the patient's log already.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.actor import Actor
from imaging.models import Patient
from sharing.selectors import pushes_for_patient


class Command(BaseCommand):
    help = "List a patient's shares (pushes to partner hospitals)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mrn", required=True, help="The patient's medical record number.")
        parser.add_argument("--issuer", default=None, help="The MRN's issuer, when several patients share an MRN.")

    def handle(self, *args, mrn: str, issuer: str | None, **options) -> None:
        patients = Patient.objects.filter(mrn=mrn)
        if issuer:
            patients = patients.filter(issuer=issuer)
        found = list(patients[:2])
        if not found:
            raise CommandError("No patient has this MRN.")
        if len(found) > 1:
            raise CommandError("Several patients have this MRN: give --issuer.")
        patient = found[0]
        pushes = list(pushes_for_patient(actor=Actor.system("list_shares"), patient=patient))
        if not pushes:
            self.stdout.write("No shares.")
            return
        self.stdout.write("id\tkind\tcreated\tpartner\tstatus\tsent/total\tstudies\terror")
        for push in pushes:
            studies = ",".join(s.study_uid for s in push.studies.all())
            self.stdout.write(
                f"{push.pk}\tpush\t{push.created_at:%Y-%m-%d %H:%M}Z\t{push.partner.name}\t{push.status}\t"
                f"{push.sent}/{push.total}\t{studies}\t{push.error}"
            )

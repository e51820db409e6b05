from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit import triggers
from audit.checkpoints import checkpoint_verify
from audit.models import AuditCheckpoint
from audit.services import chain_verify
from imaging.models import Patient


class Command(BaseCommand):
    help = (
        "Recompute the access log's hash chains (one patient's with --mrn) and check the append-only "
        "triggers. Exits 0 when everything verifies; otherwise non-zero, naming the first bad event."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mrn", help="Verify only this patient's chain.")
        parser.add_argument("--issuer", help="Assigning authority, when the MRN exists under several issuers.")

    def handle(self, *args, mrn: str | None, issuer: str | None, **options) -> None:
        patient = None
        if mrn:
            patients = Patient.objects.filter(mrn=mrn)
            if issuer:
                patients = patients.filter(issuer=issuer)
            found = list(patients[:2])
            if not found:
                raise CommandError(f"No patient with MRN {mrn}" + (f" and issuer {issuer}" if issuer else "") + ".")
            if len(found) > 1:
                raise CommandError(f"MRN {mrn} exists under several issuers; pass --issuer.")
            patient = found[0]
        elif issuer:
            raise CommandError("--issuer only narrows --mrn; pass both.")

        result = chain_verify(patient)
        if not result.ok:
            # Issuer/MRN identify the chain without putting a patient's name on a terminal or in a log.
            who = Patient.objects.filter(pk=result.patient_id).first()
            event = f"event {result.first_bad_event_id}" if result.first_bad_event_id else "no single event"
            raise CommandError(
                f"Audit chain broken at {event} (patient {who or result.patient_id}): {result.reason}. "
                f"{result.checked} events checked."
            )
        if not triggers.installed(connection):
            raise CommandError(
                f"The chains verify ({result.checked} events), but the append-only triggers on "
                f"{triggers.TABLE} are missing or disabled: rows can be changed. Re-run migrations or re-enable them."
            )
        checkpoint_note = ""
        latest = AuditCheckpoint.objects.order_by("-created_at", "-pk").first()
        if latest is not None and patient is None:
            problems = checkpoint_verify(latest)
            if problems:
                raise CommandError(
                    f"The chains verify, but the signed checkpoint of {latest.created_at:%Y-%m-%d %H:%M} does not: "
                    + "; ".join(problems)
                )
            checkpoint_note = f" Signed checkpoint of {latest.created_at:%Y-%m-%d %H:%M} holds."
        scope = f" for patient {patient}" if patient else ""
        chains = "chain" if result.chains == 1 else "chains"
        self.stdout.write(f"OK: {result.checked} events in {result.chains} {chains} verified{scope}; append-only triggers in place.{checkpoint_note}")

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import patient_record_move
from core.actor import Actor
from imaging.management.patients import patient_by_mrn
from imaging.services.patients import RELINK_REASON_MIN_LENGTH


class Command(BaseCommand):
    help = (
        "Move a patient record to another patient account, with a reason written on the patient's access log. "
        "The previous account loses the record at once and is signed out everywhere."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("mrn", help="The patient's medical record number.")
        parser.add_argument("--issuer", help="Assigning authority, when the MRN exists under several issuers.")
        parser.add_argument("--to-email", required=True, help="The email address of the patient account to link.")
        parser.add_argument(
            "--reason", required=True,
            help=f"Why (at least {RELINK_REASON_MIN_LENGTH} characters, e.g. a ticket number); the patient reads it.",
        )

    def handle(self, *args, mrn: str, issuer: str | None, to_email: str, reason: str, **options) -> None:
        patient = patient_by_mrn(mrn, issuer)
        user = User.objects.filter(email__iexact=to_email.strip()).first()
        if user is None:
            raise CommandError(f"No account with the email {to_email.strip()}.")
        try:
            previous = patient_record_move(actor=Actor.system("Account re-link"), patient=patient, user=user, reason=reason)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        was = f"was {previous.email}, now signed out" if previous else "had no account"
        self.stdout.write(self.style.SUCCESS(f"Patient {patient} now belongs to {user.email} ({was})."))

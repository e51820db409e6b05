"""manage.py export_studies: the privacy office answers a paper request with the same packaging
as the portal's Celery job (DESIGN.md "Contracts").

The command acts as a privacy officer named by ``--actor`` (as the patient's access log shows
them), narrowed to the one patient whose request it answers: it reaches that patient's studies
and no one else's, and records its export under that name.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.actor import Actor, Kind
from exports import packaging, services
from imaging.models import Patient, Study

# Below this a passphrase file is more likely a mistake (an empty line, a PIN) than a choice.
MIN_PASSPHRASE = 12


class Command(BaseCommand):
    help = "Package a patient's studies into an AES-256 encrypted ZIP (DICOMDIR, MANIFEST.json signed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mrn", required=True, help="The patient's hospital number.")
        parser.add_argument("--issuer", default=None, help="Assigning authority, when the MRN is not unique.")
        parser.add_argument("--out", required=True, help="Where to write the .zip (must not exist).")
        parser.add_argument("--passphrase-file", required=True, help="File whose first line is the passphrase.")
        parser.add_argument("--deidentify", action="store_true", help="De-identify (PS3.15 Basic Profile).")
        parser.add_argument("--study", action="append", default=[], metavar="UID", help="Study Instance UID (repeatable; default all).")
        parser.add_argument("--actor", default="", help="Who answers the request (shown in the patient's access log).")

    def handle(self, *args, **options) -> None:
        patients = Patient.objects.filter(mrn=options["mrn"])
        if options["issuer"]:
            patients = patients.filter(issuer=options["issuer"])
        found = list(patients[:2])
        if not found:
            raise CommandError("No patient with that MRN.")
        if len(found) > 1:
            raise CommandError("That MRN exists for several issuers; add --issuer.")
        patient = found[0]
        try:
            passphrase = Path(options["passphrase_file"]).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            raise CommandError(f"Cannot read the passphrase file: {exc.__class__.__name__}") from None
        if len(passphrase) < MIN_PASSPHRASE:
            raise CommandError(f"The passphrase must be at least {MIN_PASSPHRASE} characters.")
        out = Path(options["out"])
        if out.exists():
            raise CommandError("The output file already exists; choose another name.")
        if not out.parent.resolve().is_dir():
            raise CommandError("The output folder does not exist.")
        # No user account behind a name typed at the shell: the row names the officer as given,
        # with no account reference, exactly as the paper-request record has always read.
        actor = Actor(
            kind=Kind.PRIVACY_OFFICER, name=options["actor"] or "Privacy office",
            organization=settings.HOSPITAL_NAME, role="Privacy officer",
        ).investigating(patient.pk)
        studies = Study.objects.for_actor(actor)
        if options["study"]:
            studies = studies.filter(study_uid__in=options["study"])
            if studies.count() != len(set(options["study"])):
                raise CommandError("A study UID is unknown or belongs to another patient.")
        try:
            result = services.export_for_paper_request(
                actor=actor, patient=patient, studies=list(studies), deidentify=options["deidentify"],
                passphrase=passphrase, out=out,
            )
        except (packaging.PackagingError, ValidationError) as exc:
            raise CommandError(str(exc.messages[0] if isinstance(exc, ValidationError) else exc)) from None
        self.stdout.write(f"Wrote {out} ({result.file_count} files, {result.size} bytes, sha256 {result.sha256})")

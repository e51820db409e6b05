"""``manage.py sync_pacs [--patient ID]... [--recheck] [--json]``: pull studies from the PACS.

Exit status 0 when the run completed (rejected files are reported); non-zero with a clear
message when the PACS is not configured or fails. Safe to interrupt and run again.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actor import Actor
from imaging.pacs.errors import PacsError, PacsNotConfigured
from imaging.pacs.sync import pacs_sync
from imaging.services.ingest import IMPORTER_NAME


class Command(BaseCommand):
    help = "Fetch new or changed studies of patients with an activated account from the PACS (DICOMweb)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patient", type=int, action="append", metavar="ID",
                            help="Only this patient record (repeatable); default: every activated patient.")
        parser.add_argument("--recheck", action="store_true",
                            help="Retrieve every instance again and compare bytes (slow; finds silent changes).")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args, **options) -> None:
        try:
            result = pacs_sync(actor=Actor.system(IMPORTER_NAME), patient_ids=options.get("patient"), recheck=options["recheck"])
        except PacsNotConfigured as exc:
            raise CommandError(f"{exc} Set PACS_DICOMWEB_URL (and PACS_USERNAME/PACS_PASSWORD if needed).") from exc
        except PacsError as exc:
            raise CommandError(f"{exc} What was imported so far is kept; run the command again to resume.") from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        self.stdout.write(
            f"Patients {result.patients}, studies {result.studies}, fetched {result.fetched}: imported "
            f"{result.imported}, duplicate {result.duplicate}, conflict {result.conflict}, rejected {result.rejected}."
        )
        if result.skipped_busy:
            self.stdout.write(self.style.WARNING(f"  {result.skipped_busy} patient(s) skipped: another sync is running."))
        for problem in dict.fromkeys(result.problems):
            self.stdout.write(self.style.WARNING(f"  {problem}"))

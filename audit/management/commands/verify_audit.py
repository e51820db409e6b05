from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit import triggers
from audit.checkpoints import verify_documents, verify_receipt, verify_stored
from audit.services import chain_pending, chain_verify
from imaging.management.patients import patient_by_mrn
from imaging.models import Patient


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CommandError(f"{what} {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{what} {path} cannot be read: {exc}") from exc
    except ValueError as exc:
        raise CommandError(f"{what} {path} is not JSON: {exc}") from exc


def _fail(what: str, problems: list[str]) -> CommandError:
    shown = problems[:20]
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    return CommandError(f"{what}:\n  - " + "\n  - ".join(shown) + more)


class Command(BaseCommand):
    help = (
        "Recompute the access log's hash chains (one patient's with --mrn), check the append-only triggers and "
        "every signed checkpoint (their chain, and the Merkle tree recomputed from the events), and any outside "
        "copy given (--checkpoints, --receipt). Exits 0 when everything verifies; otherwise non-zero, naming what "
        "is missing or changed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mrn", help="Verify only this patient's chain and its entries in every checkpoint.")
        parser.add_argument("--issuer", help="Assigning authority, when the MRN exists under several issuers.")
        parser.add_argument(
            "--checkpoints", metavar="FILE",
            help="Also check an exported copy (export_audit_checkpoints --out): every checkpoint in it must be in the "
            "database unchanged, and every event it covers still there.",
        )
        parser.add_argument(
            "--receipt", metavar="FILE",
            help="Also check a patient's receipt (downloaded from their access-log page): the log must still hold "
            "everything it covered.",
        )

    def handle(self, *args, mrn: str | None, issuer: str | None, checkpoints: str | None = None,
               receipt: str | None = None, **options) -> None:
        # Outside copies first: they are what an insider cannot rewrite, so their verdict leads.
        notes = []
        if checkpoints:
            documents = _read_json(checkpoints, "The checkpoint file")
            if not isinstance(documents, list) or not all(isinstance(d, dict) and "statement" in d for d in documents):
                raise CommandError(
                    f"The checkpoint file {checkpoints} is not a list of checkpoints (export_audit_checkpoints --out)."
                )
            problems = verify_documents(documents)
            if problems:
                raise _fail(f"The log no longer holds what the checkpoint file {checkpoints} covers", problems)
            notes.append(f" All {len(documents)} checkpoints in {checkpoints} hold.")
        if receipt:
            document = _read_json(receipt, "The receipt")
            if not isinstance(document, dict):
                raise CommandError(f"The receipt {receipt} is not an access-log receipt (a JSON object).")
            try:
                problems = verify_receipt(document)
            except ValueError as exc:
                raise CommandError(f"The receipt {receipt}: {exc}.") from exc
            if problems:
                raise _fail(f"The log no longer holds what the receipt {receipt} covers", problems)
            notes.append(f" The receipt {receipt} holds.")
        patient = None
        if mrn:
            patient = patient_by_mrn(mrn, issuer)
        elif issuer:
            raise CommandError("--issuer only narrows --mrn; pass both.")

        # Events queued while their chain head was busy are chained first, so the verdict covers them.
        queued = chain_pending()
        if queued:
            notes.insert(0, f" {queued} queued portal event{'s' if queued != 1 else ''} chained first.")
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
        missing = triggers.missing_checkpoint_triggers(connection)
        if missing:
            raise CommandError(
                f"The chains verify, but the append-only triggers on {', '.join(missing)} are missing or disabled: "
                "checkpoints can be changed. Re-run migrations or re-enable them."
            )
        report = verify_stored(patient=patient)
        if report.problems:
            raise _fail("The chains verify, but the signed checkpoints do not", report.problems)
        checkpoint_note = ""
        if report.latest is not None:
            checkpoint_note = (
                f" Signed checkpoints: all {report.checked} hold, the newest of {report.latest.created_at:%Y-%m-%d %H:%M}."
            )
        checkpoint_note += "".join(notes)
        scope = f" for patient {patient}" if patient else ""
        chains = "chain" if result.chains == 1 else "chains"
        self.stdout.write(f"OK: {result.checked} events in {result.chains} {chains} verified{scope}; append-only triggers in place.{checkpoint_note}")

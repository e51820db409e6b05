from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import fhir
from audit.ingest import Busy, events_ingest
from audit.models import AccessEvent

CSV_FIELDS = (
    "source_event_id", "occurred_at", "issuer", "mrn", "study_uid", "accession", "actor_type", "actor_name",
    "actor_ref", "organization", "role", "purpose", "action", "outcome",
)
# Events recorded per transaction: a crash loses at most one chunk, and re-running is safe.
CHUNK = 500
# A chunk that finds the log busy (docs/security.md §23) is tried again after these pauses.
BUSY_PAUSES = (1, 5, 15)


def _from_csv_row(row: dict[str, str]) -> dict:
    return {
        "source_event_id": row.get("source_event_id"),
        "occurred_at": row.get("occurred_at"),
        "patient": {"issuer": row.get("issuer"), "mrn": row.get("mrn")},
        "study_uid": row.get("study_uid") or "",
        "accession": row.get("accession") or "",
        "actor": {
            "type": row.get("actor_type") or None, "name": row.get("actor_name") or "", "ref": row.get("actor_ref") or "",
            "organization": row.get("organization") or "", "role": row.get("role") or "",
        },
        "purpose": row.get("purpose"),
        "action": row.get("action"),
        "outcome": row.get("outcome") or "success",
    }


class Command(BaseCommand):
    help = (
        "Back-fill access events from a CSV file (header: " + ",".join(CSV_FIELDS) + ") or a JSON file "
        '({"events": [...]} as the API takes, or FHIR AuditEvents). Re-running is safe: events already '
        "imported under the same --sender are reported as duplicates."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="A .csv or .json file.")
        parser.add_argument("--sender", required=True, help="Name of the system the events come from (idempotency namespace).")
        parser.add_argument("--organization", default="", help="Organisation for events that name none.")
        parser.add_argument("--actor-type", default="service", choices=AccessEvent.ActorType.values,
                            help="Actor type for events that name none.")
        parser.add_argument("--format", choices=["csv", "json"], help="Default: from the file's extension.")

    def handle(self, *args, file: str, sender: str, organization: str, actor_type: str, format: str | None, **options) -> None:  # noqa: A002
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file.")
        if not sender.strip() or "/" in sender:
            raise CommandError("--sender must be a non-empty name without '/'.")
        kind = format or path.suffix.lower().lstrip(".")
        defaults = {"default_actor_type": actor_type, "default_organization": organization}
        normalised = None
        try:
            if kind == "csv":
                with path.open(newline="", encoding="utf-8-sig") as fh:
                    reader = csv.DictReader(fh)
                    missing = {"source_event_id", "occurred_at", "issuer", "mrn", "purpose", "action"} - set(reader.fieldnames or [])
                    if missing:
                        raise CommandError(f"{file}: the CSV header lacks {', '.join(sorted(missing))}.")
                    raws = [_from_csv_row(row) for row in reader]
            elif kind == "json":
                body = json.loads(path.read_text(encoding="utf-8"))
                if fhir.is_fhir(body):
                    raws, normalised = fhir.from_fhir(body, **defaults)
                elif isinstance(body, dict) and isinstance(body.get("events"), list):
                    raws = body["events"]
                else:
                    raise CommandError(f'{file}: expected {{"events": [...]}}, a FHIR AuditEvent or a Bundle.')
            else:
                raise CommandError(f"{file}: cannot tell the format; pass --format csv or --format json.")
        except (UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise CommandError(f"{file}: cannot be read as {kind.upper()}: {exc}") from exc

        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for start in range(0, len(raws), CHUNK):
            for pause in (*BUSY_PAUSES, None):
                try:
                    result = events_ingest(
                        sender=sender.strip(), source=AccessEvent.Source.IMPORT, events=raws[start : start + CHUNK],
                        normalised=normalised[start : start + CHUNK] if normalised is not None else None, **defaults,
                    )
                    break
                except Busy as exc:
                    if pause is None:
                        raise CommandError(
                            f"The access log stayed busy (rows {start + 1}-{min(start + CHUNK, len(raws))} not all recorded; "
                            f"{counts['accepted']} imported before them). Run the same command again: rows already "
                            "imported come back as already present."
                        ) from exc
                    self.stderr.write(f"The access log is busy; trying rows {start + 1}- again in {pause} s.")
                    time.sleep(pause)
            for outcome in result.outcomes:
                counts[outcome.status] += 1
                if outcome.status == "rejected":
                    self.stderr.write(f"row {start + outcome.index + 1} ({outcome.source_event_id or 'no id'}): rejected: {outcome.reason}")
        self.stdout.write(
            f"{counts['accepted']} imported, {counts['duplicate']} already present, {counts['rejected']} rejected."
        )
        if counts["rejected"]:
            raise CommandError(f"{counts['rejected']} events were rejected (listed above); fix them and re-run.")

"""``python manage.py verify_receipt FILE [--public-key PEM]``: check a signed consent receipt.

Exit 0 and a summary when the signature matches; a clear error (exit 1) otherwise: not JSON,
not a receipt, altered after signing, or signed by another key.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from consent import receipts


class Command(BaseCommand):
    help = "Verify a signed Lightbox consent receipt (JSON) with the published Ed25519 public key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The receipt JSON file, as downloaded from the portal.")
        parser.add_argument(
            "--public-key", dest="public_key",
            help="The PEM public key (from /.well-known/lightbox-signing-key.pem); default: this server's key.",
        )

    def handle(self, *args, file: str, public_key: str | None = None, **options) -> None:
        path = Path(file)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path} is not JSON: {exc}") from exc
        try:
            key = None
            if public_key:
                try:
                    key = receipts.load_public_key(Path(public_key).read_bytes())
                except OSError as exc:
                    raise CommandError(f"Cannot read the public key {public_key}: {exc.strerror or exc}") from exc
            body = receipts.verify(document, key)
        except receipts.ReceiptError as exc:
            raise CommandError(f"INVALID: {exc}") from exc
        purposes = ", ".join(p.get("purpose", "?") for p in body.get("purposes", []) if isinstance(p, dict))
        self.stdout.write(
            f"VALID: receipt {body['receipt_id']} issued {body['issued_at']} by {body['controller'].get('name')}: "
            f"{purposes} {body['decision']} under policy v{body['policy'].get('version')} ({body['channel']})."
        )

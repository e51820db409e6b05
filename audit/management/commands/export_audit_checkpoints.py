from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import checkpoint_create, checkpoint_document
from audit.models import AuditCheckpoint


class Command(BaseCommand):
    help = (
        "Write the signed audit checkpoints as JSON (a list, newest first) for someone outside the hospital to "
        "keep. Each has the signed statement (tree size and root, the previous checkpoint's hash), its Ed25519 "
        "signature, the public key and the chain heads it signed. verify_audit --checkpoints FILE checks the "
        "database against such a file later."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", help="File to write (default: standard output).")
        parser.add_argument("--latest", action="store_true", help="Only the newest checkpoint.")
        parser.add_argument("--create", action="store_true", help="Sign a fresh checkpoint first.")

    def handle(self, *args, out: str | None, latest: bool, create: bool, **options) -> None:
        if create:
            checkpoint_create()
        checkpoints = AuditCheckpoint.objects.order_by("-created_at", "-pk")
        if latest:
            checkpoints = checkpoints[:1]
        documents = [checkpoint_document(c) for c in checkpoints]
        if not documents:
            raise CommandError("No checkpoints yet: Celery beat makes them every AUDIT_CHECKPOINT_MINUTES (and a worker's first start "
                "makes one), or pass --create.")
        text = json.dumps(documents, indent=2)
        if out:
            path = Path(out)
            if not path.parent.is_dir():
                raise CommandError(f"{path.parent} is not a directory.")
            path.write_text(text + "\n", encoding="utf-8")
            self.stderr.write(f"Wrote {len(documents)} checkpoint(s) to {path}.")
        else:
            self.stdout.write(text)

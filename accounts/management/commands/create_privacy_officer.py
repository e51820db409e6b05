from __future__ import annotations

import getpass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import privacy_officer_create


class Command(BaseCommand):
    help = "Create a privacy officer account. They enrol a second factor at first sign-in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument(
            "--name", required=True, help="The officer's name as patients will read it in their access log (not an email)."
        )
        parser.add_argument("--password-file", type=Path, help="Read the password from this file instead of prompting.")

    def handle(self, *args, email: str, name: str, password_file: Path | None, **options) -> None:
        if password_file:
            try:
                # Only the line ending is the file's; a file saved on Windows ends in CRLF.
                password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise CommandError(f"Cannot read {password_file}: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                raise CommandError(f"Cannot read {password_file}: it is not UTF-8 text.") from exc
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            user = privacy_officer_create(email=email, password=password, display_name=name)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created privacy officer {user.email} ({user.display_name})."))

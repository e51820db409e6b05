from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import service_account_create
from core.models import ServiceAccount


class Command(BaseCommand):
    help = "Create a service account for a downstream system and print its bearer token (once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="A unique name, e.g. 'mercy-pacs'.")
        parser.add_argument("--org", required=True, help="The organisation the system belongs to.")
        parser.add_argument(
            "--scope", action="append", required=True, choices=ServiceAccount.Scope.values,
            help="What the token may do; repeat for several.",
        )
        parser.add_argument(
            "--actor-type", default="service", choices=ServiceAccount.ActorType.values,
            help="How the system appears in patients' access logs.",
        )

    def handle(self, *args, name: str, org: str, scope: list[str], actor_type: str, **options) -> None:
        if ServiceAccount.objects.filter(name=name).exists():
            raise CommandError(f"A service account named {name!r} already exists.")
        try:
            _, token = service_account_create(name=name, organization=org, scopes=scope, actor_type=actor_type)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stderr.write(f"Created {name} ({org}) with scopes {', '.join(sorted(set(scope)))}. The token is shown once:")
        self.stdout.write(token)

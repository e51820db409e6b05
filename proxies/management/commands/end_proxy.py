from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from proxies.models import ProxyGrant
from proxies.services import proxy_end_by_office


class Command(BaseCommand):
    help = "The privacy office ends a proxy's access (stops on the proxy's next request). Lists open grants of an MRN with --list."

    def add_arguments(self, parser) -> None:
        parser.add_argument("grant_id", type=int, nargs="?", help="The grant to end.")
        parser.add_argument("--reason", default="", help="Why (the patient sees it).")
        parser.add_argument("--list", metavar="MRN", help="List the open grants of this patient record instead.")

    def handle(self, *args, grant_id: int | None, reason: str, list: str | None, **options) -> None:  # noqa: A002
        if list:
            for g in ProxyGrant.objects.filter(patient__mrn=list, ended_at__isnull=True).order_by("since"):
                self.stdout.write(f"{g.pk}\t{g.proxy_name}\t{g.relationship}\t{g.scope}\tsince {g.since:%Y-%m-%d}")
            return
        if grant_id is None:
            raise CommandError("Give a grant id (see --list MRN).")
        if not reason.strip():
            raise CommandError("Give a --reason: the patient and the proxy see it.")
        try:
            grant = proxy_end_by_office(grant_id=grant_id, reason=reason.strip())
        except ProxyGrant.DoesNotExist:
            raise CommandError(f"No open grant {grant_id}.") from None
        self.stdout.write(f"Ended grant {grant.pk} ({grant.proxy_name} for patient #{grant.patient_id}).")

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand

from proxies.services import proxy_ages_apply


class Command(BaseCommand):
    help = (
        "The growing-up rules, once a day: announce each coming change of a parent's or guardian's "
        "access (PROXY_AGE_RESTRICTED, PROXY_AGE_END) to both in advance, and end the grants of "
        "patients who reached PROXY_AGE_END."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="Run as of this day (YYYY-MM-DD).")

    def handle(self, *args, today: dt.date | None, **options) -> None:
        counts = proxy_ages_apply(today=today)
        self.stdout.write(f"Announced {counts['announced']}, ended {counts['ended']}.")

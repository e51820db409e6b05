from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP

from portal import demo


class Command(BaseCommand):
    help = "Print the current authenticator code of the demo accounts (embedded demo only)."

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo_code is for the embedded demo only.")
        totp = TOTP(demo.DEMO_TOTP_KEY)
        totp.time = time.time()
        remaining = 30 - int(time.time()) % 30
        self.stdout.write(f"{totp.token():06d}  (valid for {remaining} more seconds)")

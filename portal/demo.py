"""Demo accounts for the embedded default. Never used in production (commands refuse there)."""

from __future__ import annotations

import datetime as dt

DEMO_DOMAIN = "example.com"
DEMO_PASSWORD = "lightbox-demo-2026"
# A fixed seed so the README can tell a reader how to add the demo patient to an authenticator.
DEMO_TOTP_KEY = b"lightbox-demo-totp!!"
PATIENT = {
    "email": f"patient@{DEMO_DOMAIN}",
    "issuer": "STEXAMPLE",
    "mrn": "DEMO-0001",
    "name": "Alex Morgan",
    "birth_date": dt.date(1984, 5, 17),
}
UNACTIVATED = {"issuer": "STEXAMPLE", "mrn": "DEMO-0002", "name": "Sam Rivera", "birth_date": dt.date(1990, 11, 2)}
OFFICER_EMAIL = f"officer@{DEMO_DOMAIN}"
ADMIN_EMAIL = f"admin@{DEMO_DOMAIN}"

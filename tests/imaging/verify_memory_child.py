"""Run by tests/imaging/test_decoding_limits.py in a process of its own: send files to Verify a
copy through the real view (Django's test client, a signed-in patient's session cookie) and
report how much the process's peak memory grew while it answered.

A fresh process, because ``ru_maxrss`` only ever rises: in the test process, whatever an earlier
test allocated would hide the growth. Reads a JSON object on stdin:
``{"database_url", "storage", "cookie", "warmup": path, "files": [paths]}``; writes one JSON
object on stdout. The warm-up request loads pydicom, numpy and the decoders first, so the
growth measured is the request's own, not the imports'.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main() -> None:
    config = json.load(sys.stdin)
    os.environ["DATABASE_URL"] = config["database_url"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # 'testserver' allowed, templates instrumented (response.context)
    options = {"location": config["storage"], "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750}
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
        "renders": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
    }
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = config["cookie"]

    def post(paths: list[str]):
        handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
        try:
            return client.post("/verify/", {"files": handles})
        finally:
            for fh in handles:
                fh.close()

    warm = post([config["warmup"]])
    if warm.status_code != 200:
        raise SystemExit(f"warm-up answered {warm.status_code}")
    before = _peak_kib()
    response = post(config["files"])
    after = _peak_kib()
    results = []
    for r in response.context["results"] if response.context and response.context.get("results") else []:
        d = r.difference
        results.append({"name": r.name, "outcome": r.outcome, "pixels": d.pixels if d else None})
    json.dump({"status": response.status_code, "before_kib": before, "after_kib": after, "results": results,
               "html": response.content.decode()}, sys.stdout)


if __name__ == "__main__":
    main()

"""The events API on the embedded default (SQLite, what ``make run`` starts).

What was found: the batch ingest locked its chain heads with PostgreSQL-only SQL
(``... = ANY(%s) ... FOR UPDATE``), so on SQLite every batch was answered 500 ("near FOR: syntax
error"), and ``import_access_events`` failed the same way. The suite runs on PostgreSQL; this
test runs the API in a process of its own on a SQLite database, as ``make run`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
from django.conf import settings
from django.test import Client
from accounts.services import service_account_create
from audit.services import chain_verify, record_access
from imaging.models import Patient, Study
patient = Patient.objects.create(issuer="EMBED", mrn="API-1", name="Embedded Patient")
Study.objects.create(patient=patient, study_uid="2.25.4242", accession="ACC-E1")
_account, token = service_account_create(name="embedded-ehr", organization="Embedded", scopes=["audit:write"])
settings.ALLOWED_HOSTS = ["testserver"]

def event(n):
    return {"source_event_id": f"e-{n}", "occurred_at": f"2026-11-0{n}T10:00:00+00:00",
            "patient": {"issuer": "EMBED", "mrn": "API-1"}, "accession": "ACC-E1",
            "actor": {"type": "clinician", "name": "Dr Embedded"}, "purpose": "treatment", "action": "view"}

answers = []
for batch in ([event(1), event(2)], [event(2), event(3)]):
    response = Client().post("/api/v1/audit/events", json.dumps({"events": batch}), content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {token}")
    answers.append([response.status_code, response.json()])
record_access(patient=patient, action="view", purpose="patient_request", actor_type="patient", source="portal")
result = chain_verify(patient)
print(json.dumps({"answers": answers, "verified": result.ok, "checked": result.checked}))
"""


def test_a_batch_is_recorded_on_the_embedded_sqlite_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'lightbox.sqlite3'}", LIGHTBOX_DATA_DIR=str(tmp_path),
               LIGHTBOX_ENV="test")
    for args in (["migrate", "--noinput", "--skip-checks", "-v", "0"], ["shell", "-c", SCRIPT]):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,  # noqa: S603
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    (first_status, first), (second_status, second) = out["answers"]
    assert (first_status, first["accepted"], first["duplicate"]) == (200, 2, 0), first
    assert (second_status, second["accepted"], second["duplicate"]) == (200, 1, 1), second
    assert out == {**out, "verified": True, "checked": 4}

"""The access-log page at 1,000,000 events for one patient (10,000,000 in the table) against the
same page at 1,000 events (target: at most 1.5x slower).

Not a test: prints medians and ratios. Needs PostgreSQL (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/lightbox_bench_audit; the database is created if missing and
reused on later runs, so the slow fill happens once). Filler rows are written by PostgreSQL's
generate_series directly in SQL, bypassing record_access: their hashes are placeholders and the
chains do not verify. That is fine here (the page never re-hashes), and it is the only way to
write ten million rows on a small machine in minutes rather than hours.

    .venv/bin/python benchmarks/access_log_scale.py [--total 10000000] [--big 1000000] [--small 1000]

Each measured request is a full GET of /access-log/ through Django's test client (middleware,
second-factor gate, selectors, template, and the access event the page records about itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/lightbox_bench_audit"
FILLER_PATIENTS = 2000
ORGS = ["St. Example Hospital", "Mercy University Hospital", "Northlight AI", "Regional Imaging Research Network",
        "Acme Health Insurance", "City Clinic", "Harbour Imaging", "Valley GP Practice"]


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup(url: str, data_dir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ["LIGHTBOX_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def fill(patient_id: int, count: int, *, start_seq: int = 1) -> None:
    """``count`` events for one patient over the last 3 years, in one INSERT ... SELECT."""
    from django.db import connection

    orgs = "ARRAY[" + ",".join("'" + o.replace("'", "''") + "'" for o in ORGS) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO audit_accessevent (occurred_at, recorded_at, patient_id, actor_type, actor_name, actor_ref,
                organization, role, purpose, action, outcome, source, ip, user_agent, details, seq, prev_hash, hash)
            SELECT ts, ts, %s, (ARRAY['clinician','staff','ai_vendor','researcher'])[1 + g %% 4], 'Dr Bench ' || (g %% 50), '',
                   ({orgs})[1 + g %% {len(ORGS)}], 'Radiologist', (ARRAY['treatment','operations','research','ai_inference'])[1 + g %% 4],
                   'view', 'success', 'api', NULL, '', '{{}}'::jsonb, %s + g, repeat('0', 64), md5(g::text) || md5(g::text)
            FROM (SELECT g, now() - (random() * interval '1095 days') AS ts FROM generate_series(0, %s - 1) AS g) AS s
            """,  # noqa: S608 - constants only; values are parameters
            [patient_id, start_seq, count],
        )
        cursor.execute(
            """
            INSERT INTO audit_chainhead (patient_id, seq, last_hash) VALUES (%s, %s, %s)
            ON CONFLICT (patient_id) DO UPDATE SET seq = EXCLUDED.seq, last_hash = EXCLUDED.last_hash
            """,
            [patient_id, start_seq + count - 1, "0" * 64],
        )
        cursor.execute(
            """
            INSERT INTO audit_monthlyaccesscount (patient_id, month, actor_type, organization, purpose, count)
            SELECT patient_id, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, actor_type, organization, purpose, count(*)
            FROM audit_accessevent WHERE patient_id = %s GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (patient_id, month, actor_type, organization, purpose) DO UPDATE SET count = EXCLUDED.count
            """,
            [patient_id],
        )


def bench_user(label: str, events: int):
    """A patient user with a confirmed authenticator and ``events`` events (created once)."""
    from accounts.models import AuthenticatorApp, User
    from imaging.models import Patient

    email = f"bench-{label}@example.org"
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password="bench-password-123")
        device = AuthenticatorApp(user=user, name="bench", confirmed=True, encrypted_key="")
        device.set_key(os.urandom(20))
        device.save()
        patient = Patient.objects.create(issuer="BENCH", mrn=f"BENCH-{label}", name=f"Bench {label}", user=user)
        print(f"  filling {events:,} events for the {label} patient ...", flush=True)
        started = time.perf_counter()
        fill(patient.pk, events)
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return user


def ensure_filler(total_target: int) -> None:
    from django.db import connection

    from imaging.models import Patient

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_accessevent")
        have = cursor.fetchone()[0]
    missing = total_target - have
    if missing <= 0:
        return
    per = max(1, missing // FILLER_PATIENTS)
    print(f"  filling {missing:,} events over {FILLER_PATIENTS} other patients ...", flush=True)
    started = time.perf_counter()
    base = Patient.objects.filter(issuer="BENCH-FILL").count()
    for i in range(FILLER_PATIENTS):
        patient = Patient.objects.create(issuer="BENCH-FILL", mrn=f"F{base + i}", name="Filler")
        fill(patient.pk, per)
        if i % 200 == 199:
            print(f"    {i + 1}/{FILLER_PATIENTS} patients, {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_accessevent")
        cursor.execute("ANALYZE audit_monthlyaccesscount")


def client_for(user):
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = user.authenticatorapp_set.get().persistent_id
    session.save()
    return client


def measure(client, url: str, runs: int) -> float:
    for _ in range(5):  # warm caches and connections
        assert client.get(url).status_code == 200
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=10_000_000, help="Events in the whole table.")
    parser.add_argument("--big", type=int, default=1_000_000, help="Events of the big patient.")
    parser.add_argument("--small", type=int, default=1_000, help="Events of the small patient.")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    ensure_database(url)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        setup(url, Path(tmp))
        from django.conf import settings
        from django.db import connection

        settings.ALLOWED_HOSTS = ["testserver"]
        print(f"Database: {url}")
        small = bench_user(f"small{args.small}", args.small)
        big = bench_user(f"big{args.big}", args.big)
        ensure_filler(args.total)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM audit_accessevent")
            total = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM audit_accessevent a JOIN imaging_patient p ON p.id = a.patient_id WHERE p.user_id = %s", [big.pk])
            big_n = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM audit_accessevent a JOIN imaging_patient p ON p.id = a.patient_id WHERE p.user_id = %s", [small.pk])
            small_n = cursor.fetchone()[0]
        print(f"Events in the table: {total:,}; big patient: {big_n:,}; small patient: {small_n:,} (filler rows bypass the chain)")

        from audit.selectors import encode_cursor, event_list
        from portal.actors import actor_for_user

        def events_for_patient(user):
            return event_list(actor=actor_for_user(user))

        from imaging.models import Patient, Study

        def study_of(user) -> int:
            """A scan of the patient's that no event names (filler rows have no study)."""
            study = Study.objects.filter(patient__user=user).first() or Study.objects.create(
                patient=Patient.objects.get(user=user), study_uid=f"1.2.826.0.1.3680043.10.88.{user.pk}", description="CT CHEST")
            return study.pk

        today = dt.date.today()
        month = f"since={today - dt.timedelta(days=60):%Y-%m-%d}&until={today - dt.timedelta(days=31):%Y-%m-%d}"
        # Every filter of the form (audit.forms.AccessLogFilterForm). Filler events are all views
        # by clinicians, staff, AI vendors and researchers, with no scan: "downloads", "your own
        # actions" and the scan match nothing (or only the patient's visits to the page), the
        # worst case for a plan that walks the history looking for matches.
        rows = []
        for label, build in [
            ("first page", lambda user: "/access-log/"),
            ("page from the middle of the history (keyset cursor)", lambda user: "/access-log/?before=" + encode_cursor(
                events_for_patient(user).order_by("-occurred_at", "-pk")[events_for_patient(user).count() // 2])),
            ("filtered by organisation", lambda user: "/access-log/?organization=Northlight+AI"),
            ("what: downloads (none)", lambda user: "/access-log/?action=download"),
            ("what: views (all)", lambda user: "/access-log/?action=view"),
            ("who: researchers", lambda user: "/access-log/?actor_type=researcher"),
            ("who: you (your visits only)", lambda user: "/access-log/?actor_type=patient"),
            ("why: research", lambda user: "/access-log/?purpose=research"),
            ("scan (no events name it)", lambda user: f"/access-log/?study={study_of(user)}"),
            ("dates: one month", lambda user: f"/access-log/?{month}"),
            ("downloads in one month (none)", lambda user: f"/access-log/?action=download&{month}"),
        ]:
            small_ms = measure(client_for(small), build(small), args.runs)
            big_ms = measure(client_for(big), build(big), args.runs)
            rows.append((label, small_ms, big_ms))
        print()
        print(f"| /access-log/ (median of {args.runs}) | {small_n:,} events | {big_n:,} events | ratio |")
        print("| --- | --- | --- | --- |")
        for label, small_ms, big_ms in rows:
            print(f"| {label} | {small_ms:.1f} ms | {big_ms:.1f} ms | {big_ms / small_ms:.2f}x |")


if __name__ == "__main__":
    main()

"""The access log is append-only in the database itself (docs/security.md §13).

PostgreSQL (the test database) is checked through the ORM and raw SQL. The embedded default's
SQLite triggers are checked on a real database built by ``manage.py migrate`` in a subprocess.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from audit import triggers
from audit.models import AccessEvent
from tests.audit.conftest import clinician_view

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def event(record):
    clinician_view(record)
    return clinician_view(record, organization="Original Org")


def _refused(action) -> str:
    # Each attempt in its own savepoint: the refused statement aborts only that, not the test.
    with pytest.raises(DatabaseError) as exc, transaction.atomic():
        action()
    return str(exc.value)


def _unchanged(event: AccessEvent) -> None:
    stored = AccessEvent.objects.get(pk=event.pk)
    assert stored.organization == "Original Org"
    assert stored.hash == event.hash
    assert AccessEvent.objects.count() == 2


def test_triggers_are_installed_on_the_test_database(db):
    assert connection.vendor == "postgresql"
    assert triggers.installed(connection)


def test_orm_save_of_an_existing_event_is_refused(event):
    event.organization = "Forged Org"

    assert "append-only" in _refused(event.save)
    _unchanged(event)


def test_orm_queryset_update_is_refused(event):
    assert "append-only" in _refused(lambda: AccessEvent.objects.filter(pk=event.pk).update(organization="Forged"))
    _unchanged(event)


def test_orm_delete_is_refused(event):
    assert "append-only" in _refused(event.delete)
    _unchanged(event)


def test_orm_queryset_delete_is_refused(event):
    assert "append-only" in _refused(lambda: AccessEvent.objects.all().delete())
    _unchanged(event)


def _sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_raw_sql_update_is_refused(event):
    assert "append-only" in _refused(
        lambda: _sql("UPDATE audit_accessevent SET organization = %s WHERE id = %s", ["Forged", event.pk])
    )
    _unchanged(event)


def test_raw_sql_delete_is_refused(event):
    assert "append-only" in _refused(lambda: _sql("DELETE FROM audit_accessevent WHERE id = %s", [event.pk]))
    _unchanged(event)


def test_inserting_is_still_allowed_and_uninstall_lifts_the_guard(event):
    """The migration's reverse really drops the triggers (rolled back with the test)."""
    clinician_view(event.patient)
    triggers.uninstall(connection)

    assert not triggers.installed(connection)
    AccessEvent.objects.filter(pk=event.pk).update(organization="Changed")

    triggers.install(connection)
    assert triggers.installed(connection)
    assert "append-only" in _refused(lambda: AccessEvent.objects.filter(pk=event.pk).update(organization="Again"))


# --- SQLite, the embedded default ---------------------------------------------------------

SEED = """
from imaging.models import Patient
from audit.services import record_access
patient = Patient.objects.create(issuer="EMBED", mrn="SQL-1", name="Embedded Patient")
for n in range(3):
    record_access(patient=patient, action="view", purpose="treatment", actor_type="clinician",
                  organization="Org %d" % n, ip="192.0.2.1", details={"n": n, "ratio": 0.25})
"""


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A migrated SQLite database with one patient and three events, as ``make run`` builds it."""
    data_dir = tmp_path_factory.mktemp("sqlite-embedded")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    db_path = data_dir / "lightbox.sqlite3"
    env.update(DATABASE_URL=f"sqlite:///{db_path}", LIGHTBOX_DATA_DIR=str(data_dir), LIGHTBOX_ENV="test")
    _manage(env, "migrate", "--noinput", "--skip-checks", "-v", "0")
    _manage(env, "shell", "-c", SEED)
    return db_path, env


def _manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # System checks import every URLconf; this test is about the database, not the site.
    if args[0] in {"verify_audit", "migrate"} and "--skip-checks" not in args:
        args = (*args, "--skip-checks")
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_sqlite_refuses_update_and_delete(sqlite_db):
    db_path, env = sqlite_db
    with sqlite3.connect(db_path) as db:
        for statement in ("UPDATE audit_accessevent SET organization = 'Forged'", "DELETE FROM audit_accessevent"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)
        rows = db.execute("SELECT organization FROM audit_accessevent ORDER BY seq").fetchall()

    assert rows == [("Org 0",), ("Org 1",), ("Org 2",)]
    assert "3 events in 1 chain verified" in _manage(env, "verify_audit").stdout


def test_sqlite_tampering_past_the_triggers_fails_verify_audit(sqlite_db, tmp_path):
    db_path, env = sqlite_db
    # A copy, so the other test keeps its intact database whatever the order.
    copy_path = tmp_path / "tampered.sqlite3"
    with sqlite3.connect(db_path) as src, sqlite3.connect(copy_path) as dst:
        src.backup(dst)
    env = {**env, "DATABASE_URL": f"sqlite:///{copy_path}"}
    with sqlite3.connect(copy_path) as db:
        for name in triggers.SQLITE_TRIGGERS:
            db.execute(f"DROP TRIGGER {name}")

    result = _manage(env, "verify_audit", check=False)
    assert result.returncode == 1
    assert "append-only triggers" in result.stderr

    with sqlite3.connect(copy_path) as db:
        (bad_id,) = db.execute("SELECT id FROM audit_accessevent WHERE seq = 2").fetchone()
        db.execute("UPDATE audit_accessevent SET organization = 'Forged' WHERE id = ?", [bad_id])
    result = _manage(env, "verify_audit", "--mrn", "SQL-1", check=False)

    assert result.returncode == 1
    assert f"event {bad_id}" in result.stderr
    assert "EMBED/SQL-1" in result.stderr
    assert "Embedded Patient" not in result.stderr

    with sqlite3.connect(copy_path) as db:
        db.execute("DELETE FROM audit_accessevent WHERE seq >= 2")
    result = _manage(env, "verify_audit", check=False)

    assert result.returncode == 1
    assert "deleted" in result.stderr

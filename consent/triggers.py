"""Database triggers that make ``consent_consentdecision`` append-only.

A decision is a record of what the patient said, with a signed receipt quoting it: an edited
row would contradict the receipt the patient holds. Installed by migration 0002; kept here (as
``audit/triggers.py`` does) so a later migration that rebuilds the table on SQLite can call
``install`` again, and tests can check the triggers are in place.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "consent_consentdecision"
MESSAGE = "consent_consentdecision is append-only"

POSTGRESQL_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"""
    CREATE TRIGGER {TABLE}_no_update_delete
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()
    """,
]
POSTGRESQL_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update_delete ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {TABLE}_append_only()",
]
POSTGRESQL_TRIGGERS = [f"{TABLE}_no_update_delete"]

SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END
    """,
]
SQLITE_UNINSTALL = [f"DROP TRIGGER IF EXISTS {TABLE}_no_update", f"DROP TRIGGER IF EXISTS {TABLE}_no_delete"]
SQLITE_TRIGGERS = [f"{TABLE}_no_update", f"{TABLE}_no_delete"]


def _statements(vendor: str, *, install: bool) -> list[str]:
    if vendor == "postgresql":
        return POSTGRESQL_INSTALL if install else POSTGRESQL_UNINSTALL
    if vendor == "sqlite":
        return SQLITE_INSTALL if install else SQLITE_UNINSTALL
    # Refuse rather than keep a consent history that can be silently rewritten.
    raise NotImplementedError(f"Append-only consent triggers exist for PostgreSQL and SQLite, not {vendor}.")


def install(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for sql in _statements(connection.vendor, install=True):
            cursor.execute(sql)


def uninstall(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for sql in _statements(connection.vendor, install=False):
            cursor.execute(sql)


def installed(connection: BaseDatabaseWrapper) -> bool:
    """True when every append-only trigger exists and is enabled on this database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled <> 'D'", [TABLE]
            )
            expected = POSTGRESQL_TRIGGERS
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
            expected = SQLITE_TRIGGERS
        else:
            return False
        present = {row[0] for row in cursor.fetchall()}
    return set(expected) <= present

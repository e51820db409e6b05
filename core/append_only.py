"""Database triggers that make a table append-only (docs/security.md §13): UPDATE and DELETE refused.

Used for the access log (``audit``) and consent decisions (``consent``). Each app keeps a small
``triggers`` module naming its table, so its migration installs the triggers and a later
migration that rebuilds the table (SQLite rebuilds a table for most ALTERs, dropping its
triggers) can install them again; ``installed`` lets checks confirm they are still in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass(frozen=True)
class AppendOnlyTable:
    table: str
    what: str  # for the refusal on other databases, e.g. "an access log"

    @property
    def message(self) -> str:
        return f"{self.table} is append-only"

    @property
    def postgresql_triggers(self) -> list[str]:
        return [f"{self.table}_no_update_delete"]

    @property
    def sqlite_triggers(self) -> list[str]:
        return [f"{self.table}_no_update", f"{self.table}_no_delete"]

    def _statements(self, vendor: str, *, install: bool) -> list[str]:
        t, msg = self.table, self.message
        if vendor == "postgresql":
            if install:
                return [
                    f"""
                    CREATE OR REPLACE FUNCTION {t}_append_only() RETURNS trigger
                    LANGUAGE plpgsql AS $$
                    BEGIN
                        RAISE EXCEPTION '{msg}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
                    END
                    $$
                    """,
                    f"""
                    CREATE TRIGGER {t}_no_update_delete
                    BEFORE UPDATE OR DELETE ON {t}
                    FOR EACH ROW EXECUTE FUNCTION {t}_append_only()
                    """,
                ]
            return [f"DROP TRIGGER IF EXISTS {t}_no_update_delete ON {t}", f"DROP FUNCTION IF EXISTS {t}_append_only()"]
        if vendor == "sqlite":
            if install:
                return [
                    f"CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{msg}: UPDATE refused'); END",
                    f"CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{msg}: DELETE refused'); END",
                ]
            return [f"DROP TRIGGER IF EXISTS {t}_no_update", f"DROP TRIGGER IF EXISTS {t}_no_delete"]
        # Refuse rather than keep a history that can be silently rewritten.
        raise NotImplementedError(f"Append-only triggers for {self.what} exist for PostgreSQL and SQLite, not {vendor}.")

    def install(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            for sql in self._statements(connection.vendor, install=True):
                cursor.execute(sql)

    def uninstall(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            for sql in self._statements(connection.vendor, install=False):
                cursor.execute(sql)

    def installed(self, connection: BaseDatabaseWrapper) -> bool:
        """True when every append-only trigger exists and is enabled on this database."""
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # tgenabled 'D' = disabled (ALTER TABLE ... DISABLE TRIGGER).
                cursor.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled <> 'D'", [self.table]
                )
                expected = self.postgresql_triggers
            elif connection.vendor == "sqlite":
                cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [self.table])
                expected = self.sqlite_triggers
            else:
                return False
            present = {row[0] for row in cursor.fetchall()}
        return set(expected) <= present

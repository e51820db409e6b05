"""The access log is append-only at the database level (docs/security.md §13), and so are its
signed checkpoints and the Merkle tree they sign (§20).

Installed by migration 0002 (events) and 0005 (checkpoints, the Merkle tree's leaves and tiles);
``verify_audit`` checks the triggers are still in place.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from core.append_only import AppendOnlyTable

_TABLE = AppendOnlyTable("audit_accessevent", "the access log")
TABLE = _TABLE.table
SQLITE_TRIGGERS = _TABLE.sqlite_triggers
install, uninstall, installed = _TABLE.install, _TABLE.uninstall, _TABLE.installed

# The witnessed part: signed checkpoints and the tree they sign.
CHECKPOINT_TABLES = (
    AppendOnlyTable("audit_auditcheckpoint", "the audit checkpoints"),
    AppendOnlyTable("audit_auditleaf", "the audit tree's leaves"),
    AppendOnlyTable("audit_audittreetile", "the audit tree's tiles"),
)


def install_checkpoint_triggers(connection: BaseDatabaseWrapper) -> None:
    for table in CHECKPOINT_TABLES:
        table.install(connection)


def uninstall_checkpoint_triggers(connection: BaseDatabaseWrapper) -> None:
    for table in CHECKPOINT_TABLES:
        table.uninstall(connection)


def missing_checkpoint_triggers(connection: BaseDatabaseWrapper) -> list[str]:
    """Tables among the checkpoint tables whose append-only triggers are missing or disabled."""
    return [table.table for table in CHECKPOINT_TABLES if not table.installed(connection)]

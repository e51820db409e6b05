"""The access log is append-only at the database level (docs/security.md §13).

Installed by migration 0002; ``verify_audit`` checks the triggers are still in place.
"""

from __future__ import annotations

from core.append_only import AppendOnlyTable

_TABLE = AppendOnlyTable("audit_accessevent", "the access log")
TABLE = _TABLE.table
SQLITE_TRIGGERS = _TABLE.sqlite_triggers
install, uninstall, installed = _TABLE.install, _TABLE.uninstall, _TABLE.installed

"""Consent decisions are append-only at the database level.

A decision is a record of what the patient said, with a signed receipt quoting it: an edited row
would contradict the receipt the patient holds. Installed by migration 0002.
"""

from __future__ import annotations

from core.append_only import AppendOnlyTable

_TABLE = AppendOnlyTable("consent_consentdecision", "consent decisions")
TABLE = _TABLE.table
SQLITE_TRIGGERS = _TABLE.sqlite_triggers
install, uninstall, installed = _TABLE.install, _TABLE.uninstall, _TABLE.installed

"""The audit log in the admin: its signed checkpoints only.

The access events themselves are not in the admin: each is a line of one patient's history (who
looked at which study, why), which the portal shows only to the patient and, through a flag, to
the privacy officer holding it, each look itself logged (docs/security.md §19). Administrators
check the log whole with ``manage.py verify_audit``, which shows no patient's data.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditCheckpoint


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(admin.ModelAdmin):
    """Read-only (and append-only in the database): checkpoints are signed every
    ``AUDIT_CHECKPOINT_MINUTES`` by the beat task; export them with
    ``manage.py export_audit_checkpoints``. Patients appear only as internal ids in ``heads``."""

    list_display = ("created_at", "tree_size", "chains", "events")
    fields = ("created_at", "tree_size", "root", "previous", "chains", "events", "statement", "signature")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditCheckpoint | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditCheckpoint | None = None) -> bool:
        return False

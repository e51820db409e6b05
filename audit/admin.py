from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AccessEvent, AuditCheckpoint


@admin.register(AccessEvent)
class AccessEventAdmin(admin.ModelAdmin):
    """Read-only: the access log is append-only, and only ``record_access`` appends to it."""

    list_display = ("occurred_at", "patient", "actor_type", "actor_name", "organization", "purpose", "action", "outcome")
    list_filter = ("actor_type", "purpose", "action", "outcome", "source")
    # Exact matches only: substring search over the whole log would scan every row.
    search_fields = ("=patient__mrn", "=actor_ref", "=source_event_id")
    list_select_related = ("patient", "study")
    # COUNT(*) over a log that only grows gets slower every day.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AccessEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AccessEvent | None = None) -> bool:
        return False


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(admin.ModelAdmin):
    """Read-only: checkpoints are signed by the daily task; export them with
    ``manage.py export_audit_checkpoints``."""

    list_display = ("created_at", "chains", "events")
    fields = ("created_at", "chains", "events", "statement", "signature")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditCheckpoint | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditCheckpoint | None = None) -> bool:
        return False

from __future__ import annotations

from django.contrib import admin

from exports.models import ExportRequest


@admin.register(ExportRequest)
class ExportRequestAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through exports.services (and the passphrase never shows)."""

    list_display = ("pk", "patient", "status", "deidentify", "progress", "created_at", "expires_at", "downloads")
    list_filter = ("status", "deidentify")
    fields = ("patient", "requested_by", "deidentify", "status", "progress", "error", "archive_name", "size",
              "sha256", "file_count", "burned_in_count", "created_at", "dispatched_at", "started_at",
              "heartbeat_at", "finished_at", "expires_at", "downloads", "max_downloads", "notice_seen_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

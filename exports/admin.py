from __future__ import annotations

from django.contrib import admin

from exports.models import ExportRequest


@admin.register(ExportRequest)
class ExportRequestAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through exports.services (and the passphrase never shows).

    The job's state for operations (status, progress, timings, downloads), never whose it is:
    the patient, the account that asked, the studies and the archive's name are the patient's
    data, which the portal shows on the patient's own audited export pages (docs/security.md §19).
    The error text is left out too (an exception's message may quote a file); the worker's log
    has it.
    """

    list_display = ("pk", "status", "deidentify", "progress", "created_at", "expires_at", "downloads")
    list_filter = ("status", "deidentify")
    fields = ("deidentify", "status", "progress", "size", "file_count", "burned_in_count", "created_at",
              "dispatched_at", "started_at", "heartbeat_at", "finished_at", "expires_at", "downloads", "max_downloads")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

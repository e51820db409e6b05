"""Imaging in the admin: the PACS sync's bookkeeping, by record number, read-only.

The Patient model is not in the admin: its rows are the patient's name, MRN and birth date, which
the portal shows only through audited pages (docs/security.md §19), and the one change an
administrator used to make here, moving a record to another account, is now the
``relink_patient`` command (``imaging.services.patients.patient_account_relink``: a reason, on the
patient's access log).
"""

from __future__ import annotations

from django.contrib import admin

from imaging.models import PacsPatientSync, PacsSyncRun


class _ReadOnly(admin.ModelAdmin):
    """Sync bookkeeping is written by the sync alone; administrators only look."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="patient record")
    def record(self, obj) -> str:
        return f"#{obj.patient_id}" if obj.patient_id else "—"


@admin.register(PacsPatientSync)
class PacsPatientSyncAdmin(_ReadOnly):
    # The record by number; last_error is left out (a PACS's message may quote the patient).
    list_display = ("pk", "record", "status", "studies_done", "studies_total", "last_synced_at")
    list_filter = ("status",)
    fields = ("record", "status", "studies_done", "studies_total", "instances_done", "instances_total",
              "last_synced_at", "updated_at")
    readonly_fields = fields


@admin.register(PacsSyncRun)
class PacsSyncRunAdmin(_ReadOnly):
    list_display = ("started_at", "finished_at", "status", "record", "studies", "imported", "conflicts", "rejected")
    list_filter = ("status",)
    fields = ("record", "started_at", "finished_at", "status", "studies", "imported", "conflicts", "rejected")
    readonly_fields = fields

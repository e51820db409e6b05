from __future__ import annotations

from django.contrib import admin

from imaging.models import PacsPatientSync, PacsSyncRun, Patient


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("mrn", "issuer", "name", "birth_date", "user")
    search_fields = ("mrn", "name")
    raw_id_fields = ("user",)


class _ReadOnly(admin.ModelAdmin):
    """Sync bookkeeping is written by the sync alone; administrators only look."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PacsPatientSync)
class PacsPatientSyncAdmin(_ReadOnly):
    list_display = ("patient", "status", "studies_done", "studies_total")
    list_filter = ("status",)


@admin.register(PacsSyncRun)
class PacsSyncRunAdmin(_ReadOnly):
    list_display = ("started_at", "finished_at", "status", "patient", "studies")
    list_filter = ("status",)

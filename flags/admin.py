"""Admin: read-only views for administrators; the office works in its own pages, where every
look is audited, so the admin offers no editing of flags or notices."""

from __future__ import annotations

from django.contrib import admin

from flags.models import Flag, FlagEvent, Incident, Notice


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ("pk", "category", "status", "assignee", "created_at", "due_at", "closed_at")
    list_filter = ("status", "category")


@admin.register(FlagEvent)
class FlagEventAdmin(ReadOnlyAdmin):
    list_display = ("flag", "kind", "actor", "created_at")
    list_filter = ("kind",)


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("pk", "confirmed_at", "organization", "patients_notified")


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin):
    list_display = ("pk", "subject", "created_at", "read_at")

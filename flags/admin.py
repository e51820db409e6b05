"""Admin: read-only metadata for administrators; the office works in its own pages, where every
look is audited, so the admin offers no editing of flags.

What a flag is about (the patient, their study, their words, the office's messages and notices to
them) is the patient's data: the admin shows a flag's category, status, holder and dates, as the
office's queue does, and an incident's counts; the timeline (``FlagEvent``) and the patients'
notices (``Notice``) are not in the admin at all (docs/security.md §19).
"""

from __future__ import annotations

from django.contrib import admin

from flags.models import Flag, Incident


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
    fields = ("category", "status", "assignee", "created_at", "updated_at", "due_at", "closed_at")
    readonly_fields = fields


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("pk", "confirmed_at", "organization", "patients_notified")
    fields = ("flag", "confirmed_by", "confirmed_at", "organization", "window_start", "window_end", "patients_notified")
    readonly_fields = fields

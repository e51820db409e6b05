from __future__ import annotations

from django.contrib import admin

from imaging.models import Patient


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("mrn", "issuer", "name", "birth_date", "user")
    search_fields = ("mrn", "name")
    raw_id_fields = ("user",)

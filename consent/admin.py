from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from consent import services
from consent.models import ConsentPolicy, Recipient


class ConsentPolicyForm(forms.ModelForm):
    class Meta:
        model = ConsentPolicy
        fields = ("version", "title", "text", "changes", "effective_from")

    def clean_version(self) -> int:
        version = self.cleaned_data["version"]
        latest = ConsentPolicy.objects.order_by("-version").values_list("version", flat=True).first()
        if latest is not None and version <= latest:
            raise forms.ValidationError(f"A new version must be above {latest}.")
        return version


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(admin.ModelAdmin):
    """New versions are published here; a published version is never edited (receipts quote its hash)."""

    form = ConsentPolicyForm

    list_display = ("version", "title", "effective_from", "sha256")
    fields = ("version", "title", "text", "changes", "effective_from", "sha256")
    readonly_fields = ("sha256",)

    def has_change_permission(self, request: HttpRequest, obj: ConsentPolicy | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ConsentPolicy | None = None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        published = services.consent_policy_publish(
            version=obj.version, text=obj.text, changes=obj.changes, title=obj.title, effective_from=obj.effective_from
        )
        obj.pk = published.pk


# Consent decisions are not in the admin: each is one patient's choice about their scans, shown
# to the patient on their consent page and to the privacy office through its audited pages
# (docs/security.md §19). Paper and phone decisions go through the office's form
# (/consent/office/record/), which signs a receipt and logs the change.


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    """The organisations shown on the patients' "Who may use my scans" page."""

    list_display = ("name", "kind", "scope", "receives", "retention", "active", "updated_at")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_filter = ("kind", "scope", "receives", "active")
    search_fields = ("name",)

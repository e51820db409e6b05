from __future__ import annotations

from django import forms
from django.contrib import admin

from sharing.models import Partner
from sharing.services import partner_set_password


class PartnerForm(forms.ModelForm):
    """The password is write-only: typed in, encrypted (``core.crypto``), never shown back
    (docs/security.md §27). Empty keeps the stored one; "clear" removes it."""

    stow_url = forms.URLField(label="DICOMweb base URL", max_length=500, assume_scheme="https",
                              help_text=Partner._meta.get_field("stow_url").help_text)
    password = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                               help_text="Leave empty to keep the stored password.")
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")

    class Meta:
        model = Partner
        fields = ("name", "stow_url", "username", "active")

    def save(self, commit: bool = True) -> Partner:
        partner = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            partner_set_password(partner, "")
        elif self.cleaned_data.get("password"):
            partner_set_password(partner, self.cleaned_data["password"])
        if commit:
            partner.save()
        return partner


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    """Partner organisations a patient may send scans to. No patient data here: pushes are the
    patient's, shown on their own sharing page and in their access log (docs/security.md §19)."""

    form = PartnerForm
    list_display = ("name", "stow_url", "active", "has_password", "created_at")
    list_filter = ("active",)
    search_fields = ("name",)

    @admin.display(boolean=True, description="Password stored")
    def has_password(self, obj: Partner) -> bool:
        return bool(obj.password_encrypted)

    def has_delete_permission(self, request, obj=None) -> bool:
        # A partner that received pushes stays (their rows name it); deactivate it instead.
        return obj is None or not obj.pushes.exists()

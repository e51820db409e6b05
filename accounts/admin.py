from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ActivationCode, AuthenticatorApp, RecoveryCodeSet, SignInEvent, User
from core.models import ServiceAccount


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    search_fields = ("email",)
    fieldsets = (
        (None, {"fields": ("email", "password", "role")}),
        ("Status", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "role", "password1", "password2")}),)


@admin.register(ActivationCode)
class ActivationCodeAdmin(admin.ModelAdmin):
    list_display = ("patient", "created_at", "expires_at", "used_at", "revoked_at")
    # The hash is useless to a person and must never be edited.
    exclude = ("code_hash",)
    readonly_fields = ("patient", "created_at", "expires_at", "used_at", "used_by")

    def has_add_permission(self, request) -> bool:
        # Codes are issued by `issue_activation_code`, which hashes them and prints them once; a
        # row added here would have no code at all. What the admin may do is revoke one.
        return False


@admin.register(AuthenticatorApp)
class AuthenticatorAppAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    # The encrypted seed stays out of the admin entirely.
    fields = ("user", "name", "confirmed")
    readonly_fields = ("user",)

    def has_add_permission(self, request) -> bool:
        # A person enrols their own app (its seed never leaves their phone and the database).
        return False


@admin.register(RecoveryCodeSet)
class RecoveryCodeSetAdmin(admin.ModelAdmin):
    list_display = ("user", "confirmed")
    fields = ("user", "confirmed")
    readonly_fields = ("user",)

    def has_add_permission(self, request) -> bool:
        # Codes are made by accounts.services for their owner and shown to them once.
        return False


@admin.register(SignInEvent)
class SignInEventAdmin(admin.ModelAdmin):
    list_display = ("user", "occurred_at", "method", "ip")
    readonly_fields = ("user", "occurred_at", "method", "ip", "user_agent")

    # Written by the sign-in itself: a record to read, never to add or edit.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "actor_type", "scopes", "token_prefix", "last_used_at", "revoked_at")
    readonly_fields = ("token_prefix", "created_at", "last_used_at", "revoked_at")
    # Tokens are made by `create_service_account`, which shows the token once; the hash stays hidden.
    exclude = ("token_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens now")
    def revoke(self, request, queryset) -> None:
        from accounts.services import service_account_revoke

        for account in queryset:
            service_account_revoke(account=account)

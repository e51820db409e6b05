"""The admin's account pages. Accounts are account data (email, role, sign-in state, factors),
which administrators manage; which patient record an account holds is not shown anywhere in the
admin (that link is the patient's data, changed only by ``relink_patient``, with a reason, on the
patient's log). Every admin page shows ids, statuses and counts of patient-linked rows, never a
patient's name, MRN, birth date or study (docs/security.md §19)."""

from __future__ import annotations

from allauth.usersessions.admin import UserSessionAdmin as BaseUserSessionAdmin
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ActivationCode, AuthenticatorApp, RecoveryCodeSet, SignInEvent, User
from core.models import ServiceAccount


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "display_name", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    search_fields = ("email", "display_name")
    fieldsets = (
        # display_name: how patients read a member of staff in their access log (not for patients).
        (None, {"fields": ("email", "password", "role", "display_name")}),
        ("Status", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "role", "display_name", "password1", "password2")}),
    )


# allauth's session admin searches ``user__username``, which this User (signed in by email) does
# not have: any search there was a 500. Registered again, searching what this User has.
admin.site.unregister(UserSession)


@admin.register(UserSession)
class UserSessionAdmin(BaseUserSessionAdmin):
    search_fields = ("user__email", "ip")


@admin.register(ActivationCode)
class ActivationCodeAdmin(admin.ModelAdmin):
    # The record by number only, and not who used the code: the patient's name and MRN, or which
    # account holds which record, are the patient's data (docs/security.md §19). The hash is
    # useless to a person and must never be edited. What the admin may do is revoke a code.
    list_display = ("pk", "record", "created_at", "expires_at", "used_at", "revoked_at")
    fields = ("record", "created_at", "expires_at", "used_at", "revoked_at")
    readonly_fields = ("record", "created_at", "expires_at", "used_at")

    @admin.display(description="patient record")
    def record(self, obj: ActivationCode) -> str:
        return f"#{obj.patient_id}"

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

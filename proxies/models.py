"""Proxies: a person who acts for a patient (a parent, a guardian, a caregiver) with their own account.

A ``ProxyCode`` is how a grant starts: the hospital (``issue_proxy_code``) issues one for a patient
record; the proxy, signed in with their own password and second factor, enters it with the
patient's date of birth and a ``ProxyGrant`` is made. The grant is what ``portal.actors`` reads on
every request to let the proxy reach that one record, within its scope, until it ends.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Relationship(models.TextChoices):
    PARENT = "parent", _("parent")
    GUARDIAN = "guardian", _("guardian")
    CAREGIVER = "caregiver", _("caregiver")


class Scope(models.TextChoices):
    # view: studies and the access log; view+consent: also consent choices; full: also exports and flags.
    VIEW = "view", _("See scans and the access log")
    VIEW_CONSENT = "view+consent", _("See scans and change consent choices")
    FULL = "full", _("See scans, change consent choices, download copies and send reports")


class ProxyCode(models.Model):
    """A single-use code for a proxy grant (same format and storage rules as
    ``accounts.ActivationCode``: only a keyed hash is stored, the code is shown once)."""

    patient = models.ForeignKey("imaging.Patient", on_delete=models.CASCADE, related_name="proxy_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    relationship = models.CharField(max_length=16, choices=Relationship.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.VIEW)
    ends_on = models.DateField(null=True, blank=True, help_text="The grant made from this code ends after this day.")
    # Set when the patient invited someone by email ("People who can act for me"); empty for a
    # code the hospital printed.
    invited_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The account made on /proxy/signup/ with this code: the code stays unused until that account
    # has verified its email and passed its second factor, then /proxy/code/ redeems it
    # (docs/security.md §1, §28). Only a pointer: the code itself is never stored.
    held_for = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Proxy code for patient #{self.patient_id} ({self.relationship})"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class ProxyGrantQuerySet(models.QuerySet):
    def active(self, *, now=None) -> ProxyGrantQuerySet:
        """Grants in force now: not ended, and not past their end date."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))


class ProxyGrant(models.Model):
    """``proxy`` may act for ``patient`` within ``scope`` from ``since`` until it ends."""

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="proxy_grants")
    proxy = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="proxy_grants")
    # How the patient and the access log name the proxy (given when the code is used).
    proxy_name = models.CharField(max_length=100)
    relationship = models.CharField(max_length=16, choices=Relationship.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    since = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Set end: the grant stops by itself then.")
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=200, blank=True, help_text="Who ended it, as the patient reads it.")
    end_reason = models.CharField(max_length=200, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # From PROXY_AGE_RESTRICTED a parent or guardian sees the log and consent only if the young
    # person agreed (proxies.services.proxy_young_person_agree).
    young_person_agreed_at = models.DateTimeField(null=True, blank=True)
    code = models.OneToOneField(ProxyCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="grant")

    objects = ProxyGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-since"]
        constraints = [
            # One grant in force per proxy and patient: a second code renews by ending the first.
            models.UniqueConstraint(
                fields=["patient", "proxy"], condition=Q(ended_at__isnull=True), name="proxies_one_open_grant"
            ),
        ]

    def __str__(self) -> str:
        return f"User #{self.proxy_id} for patient #{self.patient_id} ({self.relationship}, {self.scope})"

    def is_active(self, *, now=None) -> bool:
        now = now or timezone.now()
        return self.ended_at is None and (self.ends_at is None or self.ends_at > now)

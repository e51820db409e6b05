"""What every app relies on and no app owns: the service accounts that call the APIs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ServiceAccount(models.Model):
    """A downstream system (PACS, EHR, AI vendor pipeline, research broker) calling the APIs.

    Its bearer token is shown once at creation; only a keyed hash is stored. Scopes limit what
    the token may do; revoking is immediate.
    """

    class Scope(models.TextChoices):
        AUDIT_WRITE = "audit:write", _("Send access events")
        CONSENT_READ = "consent:read", _("Ask consent questions")

    class ActorType(models.TextChoices):
        # The subset of audit.AccessEvent.ActorType a system can act as.
        SERVICE = "service", _("Hospital system")
        CLINICIAN = "clinician", _("Clinical system")
        AI_VENDOR = "ai_vendor", _("AI vendor")
        RESEARCHER = "researcher", _("Research organisation")

    name = models.CharField(max_length=100, unique=True)
    organization = models.CharField(max_length=200)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices, default=ActorType.SERVICE)
    scopes = models.JSONField(default=list)
    token_prefix = models.CharField(max_length=12, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when the model lived in accounts: moving the model to
        # core (where API token auth is) changed no data.
        db_table = "accounts_serviceaccount"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        unknown = set(self.scopes) - set(self.Scope.values)
        if unknown or not self.scopes:
            raise ValidationError({"scopes": f"Scopes must be some of {', '.join(self.Scope.values)}."})

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ServiceRequestDay(models.Model):
    """How much one token used the APIs on one day (UTC): what the privacy office's service-account
    page counts. One row per token and day, incremented by ``core.service_activity``; a row of
    counters rather than a row per request, so a busy token adds one row a day, not thousands."""

    service_account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="request_days")
    day = models.DateField()
    # Every authenticated request with the right scope, answered or refused.
    requests = models.PositiveIntegerField(default=0)
    # Of those, the ones answered 429 (per-token rate limit or lookup limit, docs/security.md §22).
    rate_limited = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service_account", "day"], name="service_request_day_unique")]
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.service_account_id} on {self.day}"


class ServiceRequestMiss(models.Model):
    """A token's request that named a patient or study the portal does not have, or does not let
    that token reach (docs/security.md §22): the privacy office spots probing here.

    The patient the caller named is kept as a keyed hash of ``issuer|MRN`` (``core.crypto.keyed_hash``,
    keyed by ``SECRET_KEY``, which is not in the database), never the MRN itself: the same MRN
    asked about twice gives the same hash, so repeated and wide probing both show, yet the table
    is not a list of MRNs, and a database dump alone cannot turn the hashes back into MRNs.
    """

    service_account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="misses")
    occurred_at = models.DateTimeField(default=timezone.now)
    # Which API: "consent-check", "consent-cohort", "fhir-consent", "audit-events".
    endpoint = models.CharField(max_length=32)
    # Keyed hash of "issuer|MRN" as sent; blank where the request named studies only (cohort).
    subject_hash = models.CharField(max_length=64, blank=True)
    # How many things in this request matched nothing (a cohort's unknown study UIDs, a batch's
    # events about this patient); 1 for a single lookup.
    unknown = models.PositiveIntegerField(default=1)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["service_account", "occurred_at"], name="service_miss_account_time")]
        ordering = ["-occurred_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.endpoint} by {self.service_account_id} at {self.occurred_at:%Y-%m-%d %H:%M}"

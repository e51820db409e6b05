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

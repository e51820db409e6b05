"""The access log: one append-only, hash-chained row per access to a patient's data.

Rows are written only by ``audit.services.record_access`` (which sets ``seq``, ``prev_hash`` and
``hash``); the database rejects UPDATE and DELETE on the table (migration 0002), and
``manage.py verify_audit`` recomputes every chain.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# prev_hash of the first event in every patient's chain.
GENESIS_HASH = "0" * 64


class AccessEvent(models.Model):
    """Who touched which patient's data, when, why and how it went."""

    class ActorType(models.TextChoices):
        PATIENT = "patient", _("Patient")
        CLINICIAN = "clinician", _("Clinician")
        STAFF = "staff", _("Hospital staff")
        PRIVACY_OFFICE = "privacy_office", _("Privacy office")
        AI_VENDOR = "ai_vendor", _("AI vendor")
        RESEARCHER = "researcher", _("Researcher")
        SERVICE = "service", _("Connected system")
        SYSTEM = "system", _("Lightbox")

    class Purpose(models.TextChoices):
        # Modelled on HL7 v3 PurposeOfUse (TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT, HLEGAL, ...).
        TREATMENT = "treatment", _("Treatment")
        PAYMENT = "payment", _("Payment")
        OPERATIONS = "operations", _("Hospital operations")
        RESEARCH = "research", _("Research")
        AI_TRAINING = "ai_training", _("AI training")
        AI_INFERENCE = "ai_inference", _("AI analysis")
        PATIENT_REQUEST = "patient_request", _("Your request")
        PRIVACY_INVESTIGATION = "privacy_investigation", _("Privacy investigation")
        EMERGENCY = "emergency", _("Emergency care")
        LEGAL = "legal", _("Legal requirement")

    class Action(models.TextChoices):
        VIEW = "view", _("Viewed")
        DOWNLOAD = "download", _("Downloaded")
        EXPORT = "export", _("Exported")
        QUERY = "query", _("Searched")
        SHARE = "share", _("Shared")
        DEIDENTIFY = "deidentify", _("De-identified")
        CONSENT_CHECK = "consent_check", _("Checked consent")
        INGEST = "ingest", _("Received")
        MODIFY = "modify", _("Changed")
        DELETE = "delete", _("Deleted")

    class Outcome(models.TextChoices):
        SUCCESS = "success", _("Success")
        DENIED = "denied", _("Denied")
        FAILURE = "failure", _("Failed")

    class Source(models.TextChoices):
        PORTAL = "portal", _("Lightbox portal")
        API = "api", _("Connected system")
        IMPORT = "import", _("Import")

    occurred_at = models.DateTimeField(default=timezone.now, help_text="When the access happened (the caller's clock).")
    recorded_at = models.DateTimeField(default=timezone.now, help_text="When Lightbox wrote this row.")
    # No single-column index: the (patient, ...) indexes below serve every lookup by patient.
    patient = models.ForeignKey(
        "imaging.Patient", on_delete=models.PROTECT, related_name="access_events", db_index=False
    )
    study = models.ForeignKey(
        "imaging.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="access_events"
    )
    actor_type = models.CharField(max_length=32, choices=ActorType.choices)
    actor_name = models.CharField(max_length=200, blank=True)
    actor_ref = models.CharField(max_length=200, blank=True, help_text="Stable id of the actor in its own system.")
    organization = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=100, blank=True)
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PORTAL)
    # NULL, not "", for "no id": the idempotency constraint applies only to events that have one.
    source_event_id = models.CharField(  # noqa: DJ001
        max_length=200, null=True, blank=True, help_text="The sender's id for this event; makes re-sends idempotent."
    )
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    seq = models.PositiveBigIntegerField(help_text="Position in the patient's chain, from 1, without gaps.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            # Idempotency for external senders: a re-sent event hits this instead of duplicating.
            models.UniqueConstraint(
                fields=["source", "source_event_id"],
                condition=Q(source_event_id__isnull=False),
                name="accessevent_source_event_unique",
            ),
            # Also the (patient, seq) index; makes a forked chain impossible, not just detectable.
            models.UniqueConstraint(fields=["patient", "seq"], name="accessevent_patient_seq_unique"),
        ]
        indexes = [models.Index(fields=["patient", "-occurred_at"], name="accessevent_patient_time")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_name or self.get_actor_type_display()} ({self.occurred_at:%Y-%m-%d %H:%M})"


class ChainHead(models.Model):
    """The tip of one patient's chain. Writers lock this row, so appends for a patient are serial."""

    patient = models.OneToOneField(
        "imaging.Patient", primary_key=True, on_delete=models.PROTECT, related_name="audit_chain_head"
    )
    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"Chain head {self.patient_id} @ {self.seq}"

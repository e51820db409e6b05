"""Consent: the policy texts patients agree under, their decisions, and who may receive scans.

``ConsentDecision`` is append-only in the database (migration 0002, ``consent/triggers.py``):
a change of mind is a new row, never an edit, so the history a patient sees is the history that
happened. The current state of a (patient, scope, study) is its latest decision; with none, the
institution's ``CONSENT_DEFAULT`` applies (out of the box: refused, nothing is used).
"""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned


class Scope(models.TextChoices):
    AI_TRAINING = "ai_training", _("AI training")
    RESEARCH = "research", _("Research")
    COMMERCIAL = "commercial", _("Commercial licensing")
    TEACHING = "teaching", _("Teaching")


class ConsentPolicy(models.Model):
    """One published version of the consent text. Decisions name the version they were made under."""

    version = models.PositiveIntegerField(unique=True)
    title = models.CharField(max_length=200, default="Use of your scans beyond your care")
    text = models.TextField(help_text="The full policy text patients agree under.")
    changes = models.TextField(blank=True, help_text="What changed since the previous version, in plain language.")
    sha256 = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the text (UTF-8).")
    effective_from = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-effective_from", "-version"]
        verbose_name_plural = "consent policies"

    def __str__(self) -> str:
        return f"Consent policy v{self.version}"

    @staticmethod
    def hash_text(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def clean(self) -> None:
        # The hash is derived, never typed: receipts quote it, so it must match the text.
        self.sha256 = self.hash_text(self.text)


class ConsentDecision(models.Model):
    """A patient's yes or no for one scope, for all their studies or one study. Never edited."""

    class Decision(models.TextChoices):
        GRANTED = "granted", _("Yes")
        REFUSED = "refused", _("No")

    class Channel(models.TextChoices):
        PORTAL = "portal", _("Online, in this portal")
        PAPER = "paper", _("Paper form")
        PHONE = "phone", _("Phone call")

    class Kind(models.TextChoices):
        CHANGE = "change", _("Choice made")
        RECONFIRMATION = "reconfirmation", _("Confirmed under a new policy")

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="consent_decisions")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    # NULL = every study of the patient; a study = an exception for that study alone.
    study = models.ForeignKey(
        "imaging.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="consent_decisions"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHANGE)
    policy = models.ForeignKey(ConsentPolicy, on_delete=models.PROTECT, related_name="decisions")
    decided_at = models.DateTimeField(default=timezone.now)
    # PROTECT, not SET_NULL: the table is append-only, so the database would refuse the UPDATE anyway.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Who entered the decision: the patient, or the privacy officer for a paper or phone form.",
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.PORTAL)
    note = models.CharField(max_length=200, blank=True, help_text="E.g. the paper form's reference.")
    receipt_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The signed receipt exactly as issued: re-downloads are byte-identical and verify forever.
    receipt = models.JSONField(default=dict, editable=False)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-decided_at", "-pk"]
        indexes = [models.Index(fields=["patient", "scope", "-decided_at"], name="consent_patient_scope_time")]

    def __str__(self) -> str:
        where = f"study {self.study_id}" if self.study_id else "all studies"
        return f"{self.get_scope_display()}: {self.decision} ({where}, {self.decided_at:%Y-%m-%d %H:%M})"

    @property
    def allowed(self) -> bool:
        return self.decision == self.Decision.GRANTED


class Recipient(models.Model):
    """An organisation the hospital shares imaging data with, kept up to date by the privacy office.

    ``name`` must be spelled exactly as the organisation appears in the access log
    (``AccessEvent.organization``), so the patient sees which of them used their scans.
    """

    class Kind(models.TextChoices):
        AI_VENDOR = "ai_vendor", _("AI company")
        RESEARCHER = "researcher", _("Research partner")
        TEACHING = "teaching", _("Teaching programme")
        COMMERCIAL = "commercial", _("Commercial licensee")

    class Receives(models.TextChoices):
        DEIDENTIFIED = "deidentified", _("De-identified images (names, dates and IDs removed)")
        IDENTIFIED = "identified", _("Identified images (with your name and details)")

    name = models.CharField(max_length=200, unique=True, help_text="As it appears in the access log.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices, help_text="The choice that governs sharing with them.")
    receives = models.CharField(max_length=16, choices=Receives.choices, default=Receives.DEIDENTIFIED)
    purpose = models.TextField(help_text="What they use the images for, in plain language.")
    retention = models.CharField(max_length=200, help_text="How long they keep the data, e.g. 'Until the study ends, at most 5 years'.")
    website = models.URLField(blank=True)
    active = models.BooleanField(default=True, help_text="Untick when sharing has ended; the entry stays for the record.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "name"]

    def __str__(self) -> str:
        return self.name

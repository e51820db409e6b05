"""Flags: a patient (or the integrity check) reports something that looks wrong; the privacy
office investigates and answers.

``Flag`` is the case; ``FlagEvent`` its append-only timeline (status changes, notes, messages);
``Incident`` a confirmed privacy incident and whom it was sent to. The patient's notices of a
report's news and of incidents are ``notices.Notice`` rows (the notification centre, which
"My reports" also shows).
Writes go through ``flags.services`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.actor import Actor
from core.querysets import PatientOwnedQuerySet, patient_owned


class FlagQuerySet(PatientOwnedQuerySet):
    def for_actor(self, actor: Actor) -> FlagQuerySet:
        """A patient's own reports; for the privacy office, every report (its queue). An officer
        then reaches a flag's patient records only as ``actor.investigating(flag.patient_id)``."""
        if actor.is_officer:
            return self.all()
        return super().for_actor(actor)


class Flag(models.Model):
    class Category(models.TextChoices):
        NOT_MY_SCAN = "not_my_scan", _("I never had this scan")
        WRONG_DETAILS = "wrong_details", _("The details are wrong")
        UNFAMILIAR_ACCESSOR = "unfamiliar_accessor", _("I don't know this person or organisation")
        UNEXPECTED_AI_OR_RESEARCH_USE = "unexpected_ai_or_research_use", _("I did not agree to this AI or research use")
        SUSPECTED_TAMPERING = "suspected_tampering", _("The image looks altered")
        OTHER = "other", _("Something else")

    class Status(models.TextChoices):
        OPEN = "open", _("Received")
        IN_REVIEW = "in_review", _("Being reviewed")
        NEEDS_INFO = "needs_info", _("Waiting for your reply")
        RESOLVED = "resolved", _("Resolved")
        DISMISSED = "dismissed", _("Closed without action")

    CLOSED = (Status.RESOLVED, Status.DISMISSED)
    # The choices speak to the patient; where the office's wording differs, it is here.
    OFFICE_LABELS = {Status.NEEDS_INFO: _("Waiting for the patient")}

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="flags")
    study = models.ForeignKey("imaging.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="flags")
    access_event = models.ForeignKey(
        "audit.AccessEvent", null=True, blank=True, on_delete=models.PROTECT, related_name="flags"
    )
    # Set for flags the integrity check raised (no patient wrote them); one flag per alert.
    integrity_alert = models.OneToOneField(
        "imaging.IntegrityAlert", null=True, blank=True, on_delete=models.PROTECT, related_name="flag"
    )
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    category = models.CharField(max_length=40, choices=Category.choices)
    description = models.TextField(max_length=4000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="assigned_flags"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(max_length=4000, blank=True, help_text="Written for the patient; shown with the outcome.")

    objects = FlagQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "pk"]
        constraints = [
            # A flag is about something: a study, an access-log entry, or (via its study) an alert.
            models.CheckConstraint(
                condition=Q(study__isnull=False) | Q(access_event__isnull=False), name="flag_has_target"
            ),
        ]
        indexes = [models.Index(fields=["status", "due_at"], name="flag_status_due")]

    def __str__(self) -> str:
        return f"Flag #{self.pk} ({self.get_category_display()}, {self.get_status_display()})"

    @property
    def office_status_label(self) -> str:
        return str(self.OFFICE_LABELS.get(self.status, self.get_status_display()))

    @classmethod
    def office_status_choices(cls) -> list[tuple[str, str]]:
        return [(value, cls.OFFICE_LABELS.get(value, label)) for value, label in cls.Status.choices]

    @property
    def is_closed(self) -> bool:
        return self.status in self.CLOSED

    @property
    def is_overdue(self) -> bool:
        return not self.is_closed and self.due_at < timezone.now()

    @property
    def from_integrity_check(self) -> bool:
        return self.integrity_alert_id is not None


class FlagEvent(models.Model):
    """One line of a flag's timeline. Notes are for the office only; the rest the patient sees."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Report received")
        STATUS = "status", _("Status changed")
        CLAIMED = "claimed", _("Taken on by the privacy office")
        ASSIGNED = "assigned", _("Assigned")
        NOTE = "note", _("Internal note")
        MESSAGE_TO_PATIENT = "message_to_patient", _("Message from the privacy office")
        MESSAGE_FROM_PATIENT = "message_from_patient", _("Your reply")
        INTEGRITY_RECHECK = "integrity_recheck", _("Integrity re-check")
        INCIDENT = "incident", _("Incident confirmed")

    # What the patient never sees: office-internal working.
    INTERNAL = (Kind.NOTE, Kind.ASSIGNED, Kind.INTEGRITY_RECHECK, Kind.INCIDENT)

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    text = models.TextField(max_length=4000, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = patient_owned("flag__patient_id").as_manager()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on flag #{self.flag_id}"

    @property
    def visible_to_patient(self) -> bool:
        return self.kind not in self.INTERNAL

    @property
    def to_status_label(self) -> str:
        return Flag.Status(self.to_status).label if self.to_status else ""

    @property
    def to_status_office_label(self) -> str:
        return Flag.OFFICE_LABELS.get(self.to_status, self.to_status_label) if self.to_status else ""


class Incident(models.Model):
    """A privacy incident the office confirmed, and the criteria that chose whom to tell."""

    flag = models.ForeignKey(Flag, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    confirmed_at = models.DateTimeField(default=timezone.now)
    organization = models.CharField(max_length=200, blank=True)
    study = models.ForeignKey("imaging.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    subject = models.CharField(max_length=150)
    message = models.TextField(max_length=4000)
    patients_notified = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-confirmed_at"]

    def __str__(self) -> str:
        return f"Incident #{self.pk} ({self.confirmed_at:%Y-%m-%d})"

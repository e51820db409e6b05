"""Sharing a patient's studies with someone outside the hospital.

A push of studies to a partner organisation's archive over STOW-RS (``Push``), and a share link
for a clinician (``Share``, opened in ``ShareVisit``s; ``sharing.links``); ``/sharing/`` lists
both.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned


class Partner(models.Model):
    """Another hospital that accepts images over DICOMweb STOW-RS, listed by an administrator.

    The password is encrypted at rest (``core.crypto``, docs/security.md §27): a database dump
    alone does not give the partner's credentials away, and the admin never shows it back.
    """

    name = models.CharField(max_length=200, unique=True, help_text="How the patient and the access log name it.")
    stow_url = models.URLField(
        "DICOMweb base URL", max_length=500,
        help_text="The partner's DICOMweb root; studies are sent to <this URL>/studies (STOW-RS).",
    )
    username = models.CharField(max_length=200, blank=True)
    # Fernet token (core.crypto) of the HTTP Basic password; empty when the partner needs none.
    password_encrypted = models.TextField(blank=True)
    active = models.BooleanField(default=True, help_text="Only active partners are offered to patients.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Push(models.Model):
    """One send of some of a patient's studies to a partner, from request to done or failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Waiting to start")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Could not be sent")

    ACTIVE = (Status.QUEUED, Status.SENDING)

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="pushes")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="pushes")
    studies = models.ManyToManyField("imaging.Study", related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Instances to send.")
    sent = models.PositiveIntegerField(default=0, help_text="Instances the partner has accepted.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started on it.")
    # A plain reason for the patient (no patient data, no partner's answer verbatim).
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last time the job was sent to the queue.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last progress report of the worker.")
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "dispatched_at"], name="push_status_dispatched")]
        constraints = [models.CheckConstraint(condition=models.Q(sent__lte=models.F("total")), name="push_sent_lte_total")]

    def __str__(self) -> str:
        return f"Push {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        if self.status == self.Status.SENT:
            return 100
        return self.sent * 100 // self.total if self.total else 0


class PushedInstance(models.Model):
    """One instance of a push, fixed when the patient asked (an image added to a study later is
    not sent unasked); ``sent_at`` once the partner accepted it, so a worker that takes the push
    over skips it."""

    push = models.ForeignKey(Push, on_delete=models.CASCADE, related_name="pushed")
    instance = models.ForeignKey("imaging.Instance", on_delete=models.PROTECT, related_name="+")
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = patient_owned("push__patient_id").as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["push", "instance"], name="pushedinstance_once")]

    def __str__(self) -> str:
        return f"Push {self.push_id}: instance {self.instance_id}"


class Share(models.Model):
    """A link and an access code the patient gives a clinician, valid for some of their studies
    until ``expires_at`` or until revoked (docs/security.md §27).

    Only keyed hashes of the token and the code are stored (``sharing.links``): a database dump
    does not open a share. The patient sees the link and the code once, when they make it.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        EXPIRED = "expired", _("Expired")
        REVOKED = "revoked", _("Revoked")

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="shares")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    studies = models.ManyToManyField("imaging.Study", related_name="+")
    recipient_name = models.CharField(max_length=120)
    recipient_organization = models.CharField(max_length=160)
    recipient_email = models.EmailField()
    allow_download = models.BooleanField(default=False)
    # View and download: the encrypted archive (an ``exports`` job of the shared studies, asked for
    # by the patient when they made the share); its passphrase goes to the doctor from the patient.
    export = models.ForeignKey("exports.ExportRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Who revoked it, in a word the list shows ("you", "the privacy office"), and the office's reason.
    revoked_by = models.CharField(max_length=40, blank=True)
    revoked_reason = models.CharField(max_length=300, blank=True)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Share {self.pk} with {self.recipient_name}"

    def status_at(self, now) -> str:
        if self.revoked_at is not None:
            return self.Status.REVOKED
        return self.Status.ACTIVE if now < self.expires_at else self.Status.EXPIRED


class ShareVisit(models.Model):
    """One browser's opening of a share: after the access code, a one-time code emailed to the
    recipient; ``verified_at`` once it was entered. The browser holds the visit's secret in its
    session; only a keyed hash of it and of the one-time code are stored."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="visits")
    secret_hash = models.CharField(max_length=64, unique=True)
    otp_hash = models.CharField(max_length=64)
    otp_sent_at = models.DateTimeField()
    otp_tries = models.PositiveSmallIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = patient_owned("share__patient_id").as_manager()

    def __str__(self) -> str:
        return f"Visit {self.pk} of share {self.share_id}"

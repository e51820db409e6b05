from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned


class ExportRequest(models.Model):
    """One encrypted archive of a patient's studies, from request to expiry (DESIGN.md flow 5)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Waiting to start")
        PACKAGING = "packaging", _("Being prepared")
        READY = "ready", _("Ready to download")
        FAILED = "failed", _("Could not be prepared")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")
        REVOKED = "revoked", _("Link withdrawn")
        # Every allowed download completed, so the archive was deleted (services.export_download_finished).
        DOWNLOADED = "downloaded", _("Downloaded and removed")

    ACTIVE = (Status.QUEUED, Status.PACKAGING)

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    studies = models.ManyToManyField("imaging.Study", related_name="+")
    deidentify = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent of files packaged.")
    error = models.CharField(max_length=300, blank=True)
    # Fernet token of the passphrase (core.crypto); emptied once packaging ends.
    passphrase_encrypted = models.TextField(blank=True)
    archive_name = models.CharField(max_length=200, blank=True, help_text="File name under EXPORTS_DIR.")
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    file_count = models.PositiveIntegerField(default=0)
    burned_in_count = models.PositiveIntegerField(default=0)
    # De-identified copies: entry names by what was done about text in the pixels
    # ({"masked": [...], "not_checked": [...], "flagged": [...]}, exports.packaging.PixelReport).
    # Names are ours (DICOM/ST0001/SE0001/IM000001), never header values.
    pixel_report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last time the job was sent to the queue.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last progress report of the packaging worker.")
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Kept at least until then, however soon EXPORTS_EXPIRY_DAYS would end it: the end of the share
    # link that offers this archive to a doctor (sharing/links.py), so a 30-day share does not
    # lose its download after a week.
    keep_until = models.DateTimeField(null=True, blank=True)
    # Downloads started and not given back (a download that broke off is given back); never more
    # than max_downloads, so the limit also bounds downloads running at once.
    downloads = models.PositiveIntegerField(default=0)
    # Downloads streamed to their last byte; the archive is deleted when this reaches max_downloads.
    downloads_completed = models.PositiveIntegerField(default=0)
    max_downloads = models.PositiveIntegerField(default=5)
    # When the archive file was deleted (all downloads done, link withdrawn, or expired).
    archive_removed_at = models.DateTimeField(null=True, blank=True)
    notice_seen_at = models.DateTimeField(null=True, blank=True)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "dispatched_at"], name="export_status_dispatched")]

    def __str__(self) -> str:
        return f"Export {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def downloads_left(self) -> int:
        return max(self.max_downloads - self.downloads, 0)

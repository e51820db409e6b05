"""The patient's notification centre: one ``Notice`` per thing that is new for them.

Written by the services of the apps that know the news (flags: a report update or an incident;
exports: an export is ready; audit: a new organisation accessed the scans; consent: a new policy
version; sharing, when it exists: a share was opened) through ``notices.services.notice_add``.
The app sits just above ``imaging`` and below ``audit`` (pyproject.toml's layers), so every one
of those can write here without importing upwards. A notice holds no clinical detail: a subject,
a sentence and a link to the page that shows the news (that page records its own read).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned


class Notice(models.Model):
    class Kind(models.TextChoices):
        REPORT_UPDATE = "report_update", _("Update on your report")
        INCIDENT = "incident", _("Privacy incident")
        EXPORT_READY = "export_ready", _("Export ready")
        NEW_ORGANIZATION = "new_organization", _("New organisation")
        # The hook for sharing (not built yet): the service that records a share being opened
        # calls notice_add(kind=SHARE_OPENED, key=f"share-open:{id}", link=<the share's page>).
        SHARE_OPENED = "share_opened", _("Share opened")
        CONSENT_POLICY = "consent_policy", _("New consent policy")
        # A parent's or guardian's access changing as the patient grows up (proxies.services).
        PROXY_ACCESS = "proxy_access", _("Family access")

    # Shown on "My reports" as its messages (the privacy office's news).
    REPORT_KINDS = (Kind.REPORT_UPDATE, Kind.INCIDENT)

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="notices")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What the notice is about ("flag:12", "export:7", "access:991", "policy:3"): for kinds told
    # once per thing, a retried task or a second publish cannot tell the patient twice.
    key = models.CharField(max_length=64)
    subject = models.CharField(max_length=150)
    body = models.TextField(max_length=4000, blank=True)
    # The portal page that shows the news (a path on this site).
    link = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # A report has many updates; everything else is told once per thing.
            models.UniqueConstraint(
                fields=["patient", "kind", "key"], condition=~Q(kind="report_update"), name="notice_once_per_thing"
            ),
            models.CheckConstraint(condition=Q(link__startswith="/"), name="notice_link_is_a_path"),
        ]
        indexes = [
            models.Index(fields=["patient", "-created_at"], name="notices_patient_time"),
            # The bell's count on every page: a partial index holds only the unread rows.
            models.Index(fields=["patient"], condition=Q(read_at__isnull=True), name="notices_unread"),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def is_unread(self) -> bool:
        return self.read_at is None

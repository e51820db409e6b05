from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned


class Patient(models.Model):
    """A patient record as the hospital knows it (issuer + MRN), optionally linked to an account."""

    issuer = models.CharField(max_length=64, help_text="Assigning authority of the MRN (DICOM Issuer of Patient ID).")
    mrn = models.CharField("MRN", max_length=64)
    name = models.CharField(max_length=200)
    birth_date = models.DateField(null=True, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = patient_owned("pk").as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "mrn"], name="patient_issuer_mrn_unique")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.issuer}/{self.mrn}"


class Study(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        UNDER_REVIEW = "under_review", _("Under review")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_uid = models.CharField("Study Instance UID", max_length=64, unique=True)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.TimeField(null=True, blank=True)
    modalities = models.CharField(max_length=64, blank=True, help_text="Modalities in the study, comma-separated.")
    description = models.CharField(max_length=200, blank=True)
    accession = models.CharField(max_length=64, blank=True, db_index=True)
    institution = models.CharField(max_length=200, blank=True)
    referring_physician = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-study_date", "-study_time", "-pk"]
        indexes = [models.Index(fields=["patient", "-study_date"])]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"{self.study_date or 'undated'} {self.modalities} {self.description}".strip()


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    series_uid = models.CharField("Series Instance UID", max_length=64, unique=True)
    modality = models.CharField(max_length=16, blank=True)
    number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)

    objects = patient_owned("study__patient_id").as_manager()

    class Meta:
        ordering = ["number", "pk"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"Series {self.number or '?'} {self.modality} {self.description}".strip()


class PixelStatus(models.TextChoices):
    OK = "ok", _("Pixels can be shown")
    NONE = "none", _("No pixel data (a report or document)")
    UNDECODABLE = "undecodable", _("Pixels cannot be decoded")


class Instance(models.Model):
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    sop_uid = models.CharField("SOP Instance UID", max_length=64, unique=True)
    sop_class = models.CharField(max_length=64)
    transfer_syntax = models.CharField(max_length=64)
    number = models.IntegerField(null=True, blank=True)
    frames = models.PositiveIntegerField(default=1)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    size = models.BigIntegerField(help_text="Bytes of the stored file.")
    sha256 = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the stored file, taken at ingest.")
    storage_path = models.CharField(max_length=200, help_text="Content-addressed: dicom/ab/cd/<sha256>.dcm")
    created_at = models.DateTimeField(auto_now_add=True)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    verified_ok = models.BooleanField(null=True, blank=True, help_text="Result of the last re-hash; null until first checked.")
    # Taken from the header at ingest so the viewer needs no file read per slice: window,
    # rescale, photometric, pixel spacing, position/orientation, frame time, SOP class name.
    meta = models.JSONField(default=dict, blank=True)
    # Set at ingest by trying to decode the first frame: an undecodable file is still the
    # patient's record and is stored, but its pages say why it cannot be shown.
    pixel_status = models.CharField(max_length=16, choices=PixelStatus.choices, default=PixelStatus.OK)
    pixel_error = models.CharField(max_length=300, blank=True, help_text="Why the pixels cannot be decoded.")

    objects = patient_owned("series__study__patient_id").as_manager()

    class Meta:
        ordering = ["number", "pk"]
        indexes = [models.Index(fields=["last_verified_at"], name="instance_last_verified_idx")]

    def __str__(self) -> str:
        return self.sop_uid

    @property
    def is_image(self) -> bool:
        return bool(self.rows and self.columns and self.frames)


class IntegrityAlert(models.Model):
    """A stored file that no longer matches, or a re-sent file that differs from the original."""

    class Kind(models.TextChoices):
        CONFLICT = "conflict", _("A different file arrived with the same identifier")
        MISMATCH = "mismatch", _("The stored file no longer matches its fingerprint")
        MISSING = "missing", _("The stored file is missing")

    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    expected_sha256 = models.CharField(max_length=64)
    found_sha256 = models.CharField(max_length=64, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    details = models.JSONField(default=dict, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = patient_owned("instance__series__study__patient_id").as_manager()

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            # One open alert per finding: the nightly re-check and repeated imports of the same
            # conflicting file must not pile up duplicates for the privacy office.
            models.UniqueConstraint(
                fields=["instance", "kind", "found_sha256"],
                condition=models.Q(resolved_at__isnull=True),
                name="integrity_alert_open_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.instance_id})"


class PacsPatientSync(models.Model):
    """Progress of fetching one patient's studies from the PACS (the home page's progress bar)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting to start")
        RUNNING = "running", _("Fetching")
        DONE = "done", _("Up to date")
        FAILED = "failed", _("Failed; will be retried")

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="pacs_sync")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    studies_total = models.PositiveIntegerField(default=0)
    studies_done = models.PositiveIntegerField(default=0)
    instances_total = models.PositiveIntegerField(default=0)
    instances_done = models.PositiveIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True, help_text="End of the last complete sync.")
    last_error = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = patient_owned("patient_id").as_manager()

    def __str__(self) -> str:
        return f"{self.patient_id}: {self.status}"


class PacsInstance(models.Model):
    """What the PACS last held for one SOP Instance UID and how the sync dealt with it.

    The resume point of an interrupted sync: an instance with a row here whose header
    fingerprint is unchanged is not fetched again. A changed fingerprint means the PACS holds
    different bytes under the same UID; the sync fetches them and the import raises the
    integrity conflict.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="pacs_instances")
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    sop_uid = models.CharField(max_length=64, unique=True)
    metadata_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the PACS's WADO-RS metadata.")
    outcome = models.CharField(max_length=16, help_text="imported | duplicate | conflict (from dicom_import).")
    fetched_at = models.DateTimeField()

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        indexes = [models.Index(fields=["patient", "study_uid"])]

    def __str__(self) -> str:
        return self.sop_uid


class PacsSyncRun(models.Model):
    """One sync run (all patients, or one newly activated patient): for /healthz and admins."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        OK = "ok", _("Completed")
        FAILED = "failed", _("Failed")

    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    studies = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.status}"


class PixelText(models.Model):
    """What OCR read in one instance's pixels (text burned into the image), cached per instance.

    Written by :func:`imaging.pixel_text.pixel_text_for_instances` (the only writer); read by "What this scan
    reveals" and by de-identified exports, which mask the ``regions``. The text read is the
    patient's data, like the file it came from, and is shown only through patient selectors.
    """

    class Status(models.TextChoices):
        FOUND = "found", _("Text found in the image")
        NONE = "none", _("No text found")
        NOT_CHECKED = "not_checked", _("Could not be checked")

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="pixel_text")
    status = models.CharField(max_length=16, choices=Status.choices)
    engine = models.CharField(max_length=64, blank=True, help_text="OCR engine and version, e.g. 'tesseract 5.3.0'.")
    frames_checked = models.PositiveIntegerField(default=0)
    # [{"frame": 0, "box": [x, y, w, h], "text": "...", "kinds": ["patient_id"]}, ...]
    regions = models.JSONField(default=list, blank=True)
    # Which of the header's identifiers the text matched: ["name", "patient_id", "birth_date", "date"].
    kinds = models.JSONField(default=list, blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="Why it could not be checked.")
    checked_at = models.DateTimeField(auto_now=True)

    objects = patient_owned("instance__series__study__patient_id").as_manager()

    def __str__(self) -> str:
        return f"{self.get_status_display()} ({self.instance_id})"


class DeidentifiedCopy(models.Model):
    """Which original a file in a patient's de-identified copy came from.

    Kept server side only (the copy itself names nothing), so "Verify a copy" can tell a patient
    that a file is from their own de-identified copy. Written by
    :func:`imaging.copies.deidentified_copies_record` when an export is packaged.
    """

    sop_uid = models.CharField("De-identified SOP Instance UID", max_length=64, unique=True)
    original = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="deidentified_copies")
    # The archive it was packaged in (exports.ExportRequest id, or 0 for a paper request); not a
    # foreign key because imaging sits below exports in the layers.
    export_ref = models.BigIntegerField(default=0)
    made_at = models.DateTimeField()
    pixel_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the copy's Pixel Data bytes.")
    pixels_masked = models.BooleanField(default=False, help_text="Text regions were masked in the copy.")

    objects = patient_owned("original__series__study__patient_id").as_manager()

    class Meta:
        indexes = [models.Index(fields=["original"])]

    def __str__(self) -> str:
        return self.sop_uid

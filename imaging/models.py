from __future__ import annotations

from django.conf import settings
from django.db import models


class Patient(models.Model):
    """A patient record as the hospital knows it (issuer + MRN), optionally linked to an account."""

    issuer = models.CharField(max_length=64, help_text="Assigning authority of the MRN (DICOM Issuer of Patient ID).")
    mrn = models.CharField("MRN", max_length=64)
    name = models.CharField(max_length=200)
    birth_date = models.DateField()
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "mrn"], name="patient_issuer_mrn_unique")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.issuer}/{self.mrn}"

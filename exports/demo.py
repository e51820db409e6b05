"""Demo data for exports: one ready archive of the demo patient's studies (for make_demo_data)."""

from __future__ import annotations

from exports import services
from exports.models import ExportRequest
from imaging.models import Patient


def create_demo_export(*, patient: Patient) -> tuple[ExportRequest, str]:
    """Package an original-copy export of all of ``patient``'s studies right away (no worker)
    and return it with its passphrase, which the caller may print for the demo user.
    Writes no access event of its own beyond what packaging writes (none)."""
    export = services._create(  # noqa: SLF001 - demo set-up bypasses the request view on purpose
        patient=patient, studies=list(patient.studies.all()), deidentify=False, requested_by_id=patient.user_id,
        passphrase=(passphrase := services.generate_passphrase()),
    )
    services.export_package(export_id=export.pk)
    export.refresh_from_db()
    return export, passphrase

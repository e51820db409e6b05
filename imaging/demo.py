"""Demo studies for the demo patient: a CT series, an MR, a radiograph and an ultrasound.

Called by ``make_demo_data``. The files are generated (CT, MR and radiograph phantoms) or copied
from pydicom's bundled samples (ultrasound), rewritten to the demo patient's identity with new
UIDs, and imported through the same ``dicom_import`` service as real files, so the demo also
exercises ingest, storage, rendering and the ingest access events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

from django.utils import timezone

from core.actor import Actor
from imaging.dicom import report_synth, synth
from imaging.models import Patient, Study
from imaging.services.ingest import IMPORTER_NAME, dicom_import


def _identity(patient: Patient) -> synth.Identity:
    parts = (patient.name or "Demo Patient").split()
    given, family = (" ".join(parts[:-1]), parts[-1]) if len(parts) > 1 else ("", parts[0])
    return synth.Identity(family=family, given=given, patient_id=patient.mrn, issuer=patient.issuer,
                          birth_date=patient.birth_date, sex="F")


def _months_ago(today: dt.date, months: int, day: int) -> dt.date:
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return dt.date(year, month + 1, min(day, 28))


def build_demo_studies(patient: Patient) -> list[Study]:
    """Create four studies for ``patient`` (dated over the last two years) and return them,
    oldest first. Each call makes new studies (new UIDs); callers run it once per patient."""
    identity = _identity(patient)
    today = timezone.localdate()
    ct = synth.StudyHeader(
        description="CT CHEST WITH CONTRAST", date=_months_ago(today, 20, 14), time=dt.time(9, 42, 10),
        institution="St. Example Hospital", institution_address="1 Harbour Road, Example City",
        referring_physician="Okafor^Chidi^^Dr", accession="SEH2024CT0193", modality="CT",
        station="CTSCAN02", manufacturer="Lightbox Phantoms", model="Helix 64", serial="HX64-20417",
        operator="Lindqvist^Maja", performing_physician="Brennan^Sean^^Dr", body_part="CHEST",
    )
    mr = synth.StudyHeader(
        description="MRI BRAIN WITHOUT CONTRAST", date=_months_ago(today, 13, 3), time=dt.time(16, 5, 0),
        institution="Northgate Imaging Center", institution_address="220 Northgate Ave, Example City",
        referring_physician="Haddad^Leila^^Dr", accession="NIC-7781203", modality="MR",
        station="MRI1", manufacturer="Lightbox Phantoms", model="Aurora 1.5T", serial="AU15-0098",
        operator="Novak^Petra", body_part="HEAD",
    )
    xr = synth.StudyHeader(
        description="XR CHEST 2 VIEWS", date=_months_ago(today, 6, 21), time=dt.time(11, 18, 45),
        institution="St. Example Hospital", institution_address="1 Harbour Road, Example City",
        referring_physician="Okafor^Chidi^^Dr", accession="SEH2025DX4410", modality="DX",
        station="DXROOM3", manufacturer="Lightbox Phantoms", model="ClearView DR", serial="CVDR-33120",
        operator="Ahmed^Yusuf", body_part="CHEST",
    )
    # The ultrasound images are pydicom's samples: an epicardial echo cine (30 frames) and a
    # power-Doppler still of a lymph node. The study says so: a point-of-care scan of the heart
    # and a neck lymph node, one series each, named for what they show.
    us = synth.StudyHeader(
        description="US POINT OF CARE HEART AND NECK", date=_months_ago(today, 2, 9), time=dt.time(8, 30, 12),
        institution="Riverside Community Clinic", institution_address="48 Mill Lane, Riverside",
        referring_physician="Moreau^Claire^^Dr", accession="RCC-US-55021", modality="US",
        station="USCART1", serial="USX-1187", operator="Kim^Soo-ah", body_part="HEART",
    )
    with tempfile.TemporaryDirectory(prefix="lightbox-demo-") as tmp:
        root = Path(tmp)
        synth.write_ct_series(root / "ct", identity, ct, slices=40, size=256)
        # The CT's report: a Structured Report, and the PDF copy the hospital's system made of it.
        report_synth.write_sr(root / "ct" / "report.dcm", patient_id=identity.patient_id, patient_name=identity.pn, study_uid=ct.uid,
                              sections=report_synth.demo_ct_sections(), observer="Brennan^Sean^^Dr", date=ct.date + dt.timedelta(days=1))
        report_synth.write_pdf(root / "ct" / "report-pdf.dcm", patient_id=identity.patient_id, patient_name=identity.pn, study_uid=ct.uid,
                               title="CT chest report", lines=report_synth.DEMO_CT_PDF_LINES, date=ct.date + dt.timedelta(days=1))
        synth.write_mr_series(root / "mr", identity, mr, slices=20, size=256)
        synth.rewrite_bundled(synth.bundled_file("MR_small.dcm"), root / "mr" / "sag.dcm", identity, mr,
                              series_uid=synth.new_uid(), series_number=4, description="SAG T1 LOCALIZER")
        synth.write_radiographs(root / "xr", identity, xr)
        synth.rewrite_bundled(synth.bundled_file("examples_ybr_color.dcm"), root / "us" / "cine.dcm", identity, us,
                              series_uid=synth.new_uid(), series_number=1, description="ECHO CINE EPICARDIAL", number=1)
        synth.rewrite_bundled(synth.bundled_file("examples_rgb_color.dcm"), root / "us" / "still.dcm", identity,
                              dataclasses.replace(us, body_part="NECK"), series_uid=synth.new_uid(), series_number=2,
                              description="NECK LYMPH NODE DOPPLER", number=1, burned_in=True)
        summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[root], issuer=patient.issuer)
    if summary.rejected or summary.conflict:
        problems = [f"{f.path}: {f.reason}" for f in summary.files if f.outcome in ("rejected", "conflict")]
        raise RuntimeError("demo import failed: " + "; ".join(problems))
    uids = [ct.uid, mr.uid, xr.uid, us.uid]
    return sorted(Study.objects.filter(study_uid__in=uids, patient=patient), key=lambda s: s.study_date)

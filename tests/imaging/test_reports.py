"""Issue 19 item 15: a study's radiology report as a page a patient can read. A Structured
Report's content as headings and text, an Encapsulated PDF inline under a CSP that allows only
our own PDF; one access event per look; every text escaped. Reports are generated in code
(``imaging.dicom.report_synth``)."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from django.test import Client
from pydicom.sr.codedict import codes

from audit.models import AccessEvent
from imaging.dicom import report_synth
from imaging.models import Study
from tests.conftest import login_password_only
from tests.imaging.test_views import import_for, write_ct_series

pytestmark = pytest.mark.django_db


def study_with_reports(user, folder: Path, *, sections=None, pdf: bytes | None = None, patient_id: str = "LBX-REP-1") -> Study:
    images = write_ct_series(folder / "ct", slices=2, patient_id=patient_id)
    study_uid = pydicom.dcmread(images[0], stop_before_pixels=True).StudyInstanceUID
    sr = report_synth.write_sr(folder / "sr.dcm", patient_id=patient_id, study_uid=study_uid, sections=sections)
    doc = report_synth.write_pdf(folder / "pdf.dcm", patient_id=patient_id, study_uid=study_uid, pdf=pdf)
    return import_for(user, [*images, sr, doc])


def report_url(study: Study) -> str:
    return f"/studies/{study.pk}/report/"


def pdf_url(study: Study) -> str:
    instance = study.series.get(modality="DOC").instances.get()
    return f"/studies/{study.pk}/series/{instance.series_id}/instances/{instance.pk}/document.pdf"


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_study_page_links_to_the_report(patient_client: Client, patient, tmp_path):
    """Before: the report was a card with a disclosure, the PDF only a card saying it exists."""
    study = study_with_reports(patient, tmp_path)
    html = patient_client.get(f"/studies/{study.pk}/").content.decode()
    assert html.count(f'href="{report_url(study)}"') == 2  # the SR's card and the PDF's card


def test_structured_report_reads_as_headings_and_text_with_one_access_event(patient_client: Client, patient, tmp_path):
    study = study_with_reports(patient, tmp_path)
    before = AccessEvent.objects.filter(study=study, source="portal").count()
    response = patient_client.get(report_url(study))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "<h2" in html and "Diagnostic Imaging Report" in html
    for heading in ("History", "Findings", "Impressions"):
        assert f"<h3>{heading}</h3>" in html
    text = text_of(html)
    assert "The lungs are clear. No pleural effusion." in text
    assert "Normal chest." in text
    assert "Finding:" not in text  # a label that repeats its heading is not shown
    assert "Signed by Dr Ngozi Okafor." in text
    events = AccessEvent.objects.filter(study=study, source="portal")
    assert events.count() == before + 1
    assert events.latest("pk").details == {"page": "report", "reports": 2}


def test_pdf_report_is_inline_under_a_csp_that_allows_only_our_own_pdf(patient_client: Client, patient, tmp_path):
    pdf = report_synth.pdf_page(["Radiology report", "Normal chest."])
    study = study_with_reports(patient, tmp_path, pdf=pdf)
    page = patient_client.get(report_url(study))
    html = page.content.decode()
    assert f'<iframe class="report-pdf" src="{pdf_url(study)}" title="Radiology report (PDF)">' in html
    csp = page["Content-Security-Policy"]
    assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp and "default-src 'self'" in csp

    events = AccessEvent.objects.count()
    response = patient_client.get(pdf_url(study))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content == pdf  # the document exactly, without DICOM's padding
    assert response["Content-Disposition"].startswith("inline; filename=\"report-")
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["X-Content-Type-Options"] == "nosniff"
    pdf_csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in pdf_csp and "default-src 'none'" in pdf_csp and "script-src 'none'" in pdf_csp
    assert "no-store" in response["Cache-Control"]
    assert AccessEvent.objects.count() == events  # embedded in the audited page, like a frame


def test_report_text_is_escaped(patient_client: Client, patient, tmp_path):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    sections = [(codes.DCM.Findings, [(codes.DCM.Finding, hostile)])]
    study = study_with_reports(patient, tmp_path, sections=sections)
    html = patient_client.get(report_url(study)).content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_study_without_a_report_says_so(patient_client: Client, patient, tmp_path):
    study = import_for(patient, write_ct_series(tmp_path / "ct", slices=1, patient_id="LBX-NOREP"))
    response = patient_client.get(report_url(study))
    assert response.status_code == 200
    assert "No report yet" in response.content.decode()


def test_pdf_of_an_image_instance_is_404(patient_client: Client, patient, tmp_path):
    study = study_with_reports(patient, tmp_path)
    image = study.series.get(modality="CT").instances.first()
    url = f"/studies/{study.pk}/series/{image.series_id}/instances/{image.pk}/document.pdf"
    assert patient_client.get(url).status_code == 404


def test_another_patients_report_and_pdf_are_404_with_no_event(client: Client, patient, other_patient, tmp_path):
    study = study_with_reports(other_patient, tmp_path, patient_id="LBX-OTHER-REP")
    from tests.conftest import login_verified

    login_verified(client, patient)
    events = AccessEvent.objects.count()
    assert client.get(report_url(study)).status_code == 404
    assert client.get(pdf_url(study)).status_code == 404
    assert client.get("/studies/987654/report/").status_code == 404
    assert AccessEvent.objects.count() == events


def test_anonymous_and_password_only_cannot_read_a_report(client: Client, patient, tmp_path):
    study = study_with_reports(patient, tmp_path)
    for url in (report_url(study), pdf_url(study)):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    login_password_only(client, patient)
    for url in (report_url(study), pdf_url(study)):
        response = client.get(url)
        assert response.status_code == 302 and "/account/2fa/" in response["Location"]


def test_report_pages_take_get_only(patient_client: Client, patient, tmp_path):
    study = study_with_reports(patient, tmp_path)
    for url in (report_url(study), pdf_url(study)):
        assert patient_client.post(url).status_code == 405

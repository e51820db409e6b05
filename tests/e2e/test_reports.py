"""Issue 19 item 15 in Chromium: a patient opens the report of a scan from its study page and
reads a Structured Report as text and a PDF report inline, under the page's real CSP (the page
fixture fails the test on any CSP violation or JavaScript error), at desktop and phone widths."""

from __future__ import annotations

import pydicom
import pytest
from playwright.sync_api import Page, expect

from imaging.dicom import report_synth
from tests.e2e.test_viewer import sign_in
from tests.imaging.test_views import import_for, write_ct_series

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_patient_reads_the_report_as_text_and_as_an_inline_pdf(page: Page, live_server, site, patient, tmp_path):
    images = write_ct_series(tmp_path / "ct", slices=2)
    study_uid = pydicom.dcmread(images[0], stop_before_pixels=True).StudyInstanceUID
    sr = report_synth.write_sr(tmp_path / "sr.dcm", patient_id="LBX-CT-1", study_uid=study_uid)
    pdf = report_synth.write_pdf(tmp_path / "pdf.dcm", patient_id="LBX-CT-1", study_uid=study_uid, title="CT chest report")
    study = import_for(patient, [*images, sr, pdf])
    sign_in(page, live_server.url, patient)
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    with page.expect_response(lambda r: r.url.endswith("document.pdf")) as pdf_response:
        page.get_by_role("link", name="Read the report").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("The report on your scan")
    expect(page.get_by_role("heading", level=3, name="Impressions")).to_be_visible()
    expect(page.get_by_text("Normal chest.").first).to_be_visible()
    response = pdf_response.value
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    pdf_object = page.locator("iframe.report-pdf")
    expect(pdf_object).to_have_attribute("title", "CT chest report (PDF)")
    box = pdf_object.bounding_box()
    assert box and box["height"] > 300, box

    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the report scrolls sideways on a phone ({width}px wide)"
    box = pdf_object.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390

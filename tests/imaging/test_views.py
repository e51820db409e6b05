"""The patient's imaging pages: study list, study page, viewer, frames, thumbnails, download.

Each view's failure cases (STYLE.md): anonymous → login; password-only → second-factor step;
another patient's object → 404 like a missing one; wrong method → 405. And the access events
(docs/security.md §13): one per study page, viewer open and download, none per frame or thumbnail.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from audit.models import AccessEvent
from imaging.dicom import synth
from imaging.models import Instance, IntegrityAlert, Series, Study
from imaging.services.ingest import dicom_import
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.imaging.helpers import importer

pytestmark = pytest.mark.django_db


def dicom_testfile(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path, f"pydicom test file {name} is missing"
    return path


def write_ct_series(folder: Path, *, slices: int = 5, patient_id: str = "LBX-CT-1") -> list[Path]:
    """A small CT series built from pydicom's CT_small.dcm: each slice 5 mm further along and
    with visibly different pixels, so the viewer's image changes as it scrolls."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    study_uid, series_uid = generate_uid(), generate_uid()
    pixels = base.pixel_array.astype(np.int16)
    paths = []
    for i in range(slices):
        ds = base.copy()
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = 2
        ds.StudyDescription = "CT chest"
        ds.ImagePositionPatient = [-158.0, -179.0, -10.0 - 5.0 * i]
        ds.SliceLocation = -10.0 - 5.0 * i
        shifted = pixels.copy()
        column = (8 * i) % 112
        shifted[56:72, column : column + 16] = 1500  # a bright marker that moves slice by slice
        ds.PixelData = shifted.tobytes()
        path = folder / f"slice{i:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def sr_report(folder: Path) -> Path:
    """pydicom's test-SR.dcm with the Patient ID it lacks (ingest rightly refuses a file without one)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(dicom_testfile("test-SR.dcm"))
    ds.PatientID = "LBX-SR-1"
    path = folder / "report.dcm"
    ds.save_as(path)
    return path


def import_for(user, paths: list[str | Path]) -> Study:
    """Import files through the ingest service and give the study to ``user``'s record."""
    summary = dicom_import(actor=importer(), paths=[str(p) for p in paths])
    assert summary.rejected == 0, summary.as_dict()
    assert summary.studies, summary.as_dict()
    study = Study.objects.get(study_uid=summary.studies[0])
    Study.objects.filter(pk=study.pk).update(patient=user.patient)
    study.refresh_from_db()
    return study


@pytest.fixture
def ct_study(patient, tmp_path) -> Study:
    return import_for(patient, write_ct_series(tmp_path / "ct"))


@pytest.fixture
def mr_study(patient) -> Study:
    return import_for(patient, [dicom_testfile("MR_small.dcm")])


@pytest.fixture
def other_study(other_patient, tmp_path) -> Study:
    return import_for(other_patient, write_ct_series(tmp_path / "other", slices=2, patient_id="LBX-OTHER"))


def urls(study: Study) -> dict[str, str]:
    series = study.series.first()
    instance = series.instances.order_by("number").first()
    prefix = f"/studies/{study.pk}/series/{series.pk}"
    return {
        "study": f"/studies/{study.pk}/",
        "viewer": f"{prefix}/view/",
        "thumbnail": f"{prefix}/thumbnail.png",
        "frame": f"{prefix}/instances/{instance.pk}/frames/0.png",
        "download": f"{prefix}/instances/{instance.pk}/download/",
    }


def views_of(study: Study, action: str = "view") -> int:
    return AccessEvent.objects.filter(study=study, action=action, source="portal").count()


# --- Failure cases, every view ---------------------------------------------------------------

PAGES = ["study", "viewer", "thumbnail", "frame", "download"]


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_is_sent_to_login(client: Client, ct_study, page):
    response = client.get(urls(ct_study)[page])
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("page", PAGES)
def test_password_only_session_is_sent_to_the_second_factor(client: Client, ct_study, patient, page):
    login_password_only(client, patient)
    response = client.get(urls(ct_study)[page])
    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa/")
    assert views_of(ct_study) == 0


@pytest.mark.parametrize("page", PAGES)
def test_other_patients_study_is_404_like_a_missing_one(client: Client, patient, other_study, page):
    login_verified(client, patient)
    reauthenticate(client)
    response = client.get(urls(other_study)[page])
    assert response.status_code == 404
    missing = urls(other_study)[page].replace(f"/studies/{other_study.pk}/", "/studies/999999/")
    assert client.get(missing).status_code == 404
    assert AccessEvent.objects.filter(study=other_study, source="portal").count() == 0


def test_series_of_another_study_is_404(patient_client: Client, ct_study, other_study):
    """Mixing my study id with another patient's series id must not reach their images."""
    theirs = other_study.series.first()
    instance = theirs.instances.first()
    assert patient_client.get(f"/studies/{ct_study.pk}/series/{theirs.pk}/view/").status_code == 404
    assert patient_client.get(f"/studies/{ct_study.pk}/series/{theirs.pk}/instances/{instance.pk}/frames/0.png").status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_wrong_method_is_405(patient_client: Client, ct_study, page):
    response = patient_client.post(urls(ct_study)[page])
    assert response.status_code == 405
    assert views_of(ct_study) == 0


def test_privacy_officer_sees_no_patient_study(client: Client, officer, ct_study):
    login_verified(client, officer)
    assert client.get(urls(ct_study)["study"]).status_code == 404
    # "/" sends the officer to their own start page (the flag queue), not a patient's home.
    home = client.get("/", follow=True)
    assert home.status_code == 200 and home.redirect_chain[0][0] == "/start/"
    assert ct_study.description not in home.content.decode()


# --- Home ----------------------------------------------------------------------------------------


def test_home_lists_the_patients_studies_with_counts_and_thumbnail(patient_client: Client, ct_study, mr_study, other_study):
    response = patient_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/studies/{ct_study.pk}/"' in html
    assert f'href="/studies/{mr_study.pk}/"' in html
    assert f"/studies/{other_study.pk}/" not in html
    assert "CT chest" in html
    assert "5 images" in html
    assert "1 series" in html
    assert "JFK IMAGING CENTER" in html
    assert f"/studies/{ct_study.pk}/series/{ct_study.series.first().pk}/thumbnail.png" in html
    assert "no-store" in response["Cache-Control"]


def test_home_keeps_the_empty_state_without_studies(patient_client: Client):
    response = patient_client.get("/")
    assert "You have no imaging studies here yet" in response.content.decode()


# --- Study page ----------------------------------------------------------------------------------


def test_study_page_shows_series_integrity_and_what_the_headers_reveal(patient_client: Client, mr_study):
    response = patient_client.get(f"/studies/{mr_study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    series = mr_study.series.first()
    assert f"/studies/{mr_study.pk}/series/{series.pk}/view/" in html
    assert "What this scan reveals" in html
    # MR_small.dcm's header: the name, ID, hospital, operator and device serial number.
    for text in ("Your name", "MR1 CompressedSamples", "4MR1", "Hospital or clinic", "Radiographer or operator", "Device serial number"):
        assert text in html, text
    assert "Not yet verified" in html
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


def test_study_page_writes_exactly_one_access_event(patient_client: Client, ct_study, patient):
    before = AccessEvent.objects.count()
    patient_client.get(f"/studies/{ct_study.pk}/")
    assert AccessEvent.objects.count() == before + 1
    event = AccessEvent.objects.latest("pk")
    assert (event.action, event.actor_type, event.source, event.study_id) == ("view", "patient", "portal", ct_study.pk)
    assert event.patient_id == patient.patient.pk
    assert event.details.get("header_report") is True


def test_integrity_shows_verified_date_and_alerts(patient_client: Client, ct_study):
    import datetime as dt

    from django.utils import timezone

    when = timezone.make_aware(dt.datetime(2026, 3, 4, 3, 15))
    Instance.objects.filter(series__study=ct_study).update(verified_ok=True, last_verified_at=when)
    html = patient_client.get(f"/studies/{ct_study.pk}/").content.decode()
    from django.utils.formats import date_format

    day = date_format(timezone.localtime(when).date(), "DATE_FORMAT")  # the house date format
    assert f"All 5 files verified on {day} and unchanged" in html

    instance = Instance.objects.filter(series__study=ct_study).first()
    Instance.objects.filter(pk=instance.pk).update(verified_ok=False)
    IntegrityAlert.objects.create(instance=instance, kind="mismatch", expected_sha256=instance.sha256, found_sha256="0" * 64)
    html = patient_client.get(f"/studies/{ct_study.pk}/").content.decode()
    assert 'role="alert"' in html
    assert "Some files do not match what the hospital recorded" in html
    assert "The stored file no longer matches its fingerprint" in html
    assert "All 5 files verified" not in html


def test_structured_report_is_a_card_linking_to_its_text(patient_client: Client, patient, tmp_path):
    study = import_for(patient, [sr_report(tmp_path)])
    html = patient_client.get(f"/studies/{study.pk}/").content.decode()
    assert "Read the report" in html and f"/studies/{study.pk}/report/" in html
    assert "/view/" not in html  # no viewer for a document without pixels
    assert "A mass of" in patient_client.get(f"/studies/{study.pk}/report/").content.decode()


# --- Viewer, frames, thumbnails, download -------------------------------------------------------


def test_viewer_opens_with_config_and_one_access_event(patient_client: Client, ct_study):
    response = patient_client.get(urls(ct_study)["viewer"])
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="viewer-config"' in html and 'type="application/json"' in html
    assert "js/viewer.js" in html and "css/viewer.css" in html
    config = response.context["config"]
    assert len(config["slices"]) == 5
    # Anatomical order (position along the slice normal), each with its position readout.
    assert [s["position"] for s in config["slices"]] == [-30.0, -25.0, -20.0, -15.0, -10.0]
    assert [p["key"] for p in config["presets"]] == ["soft", "lung", "bone", "brain"]
    assert views_of(ct_study) == 1
    assert AccessEvent.objects.latest("pk").details["page"] == "viewer"


def test_frames_and_thumbnails_are_png_private_no_store_and_not_audited(patient_client: Client, ct_study):
    patient_client.get(urls(ct_study)["viewer"])
    events = AccessEvent.objects.count()
    series = ct_study.series.first()
    seen = set()
    for instance in series.instances.all():
        response = patient_client.get(f"/studies/{ct_study.pk}/series/{series.pk}/instances/{instance.pk}/frames/0.png?c=40&w=400")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
        image = Image.open(io.BytesIO(response.content))
        assert image.size == (128, 128)
        seen.add(response.content)
    assert len(seen) == 5  # every slice is a different picture
    thumb = patient_client.get(urls(ct_study)["thumbnail"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    assert "no-store" in thumb["Cache-Control"]
    assert AccessEvent.objects.count() == events  # none per frame or thumbnail


def test_frame_rejects_a_bad_window_and_a_missing_frame(patient_client: Client, ct_study):
    frame = urls(ct_study)["frame"]
    assert patient_client.get(frame + "?c=40").status_code == 400
    assert patient_client.get(frame + "?c=abc&w=400").status_code == 400
    assert patient_client.get(frame + "?c=40&w=0").status_code == 400
    assert patient_client.get(frame.replace("/frames/0.png", "/frames/1.png")).status_code == 404


def test_download_needs_a_recent_password_and_writes_one_download_event(patient_client: Client, ct_study):
    url = urls(ct_study)["download"] + "?frame=0&c=40&w=400"
    response = patient_client.get(url)
    assert response.status_code == 302
    assert "/accounts/reauthenticate/" in response["Location"]
    assert views_of(ct_study, "download") == 0

    reauthenticate(patient_client)
    response = patient_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith('attachment; filename="scan-')
    assert views_of(ct_study, "download") == 1
    assert AccessEvent.objects.latest("pk").details == {"format": "png", "series": ct_study.series.first().pk,
                                                        "instance": response.wsgi_request.resolver_match.kwargs["instance_id"],
                                                        "frame": 0}


def test_non_image_series_has_no_viewer(patient_client: Client, patient, tmp_path):
    study = import_for(patient, [sr_report(tmp_path)])
    series = Series.objects.get(study=study)
    assert patient_client.get(f"/studies/{study.pk}/series/{series.pk}/view/").status_code == 404
    assert patient_client.get(f"/studies/{study.pk}/series/{series.pk}/thumbnail.png").status_code == 404
    assert views_of(study) == 0


# --- Images that cannot be shown -----------------------------------------------------------------

PART2 = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2 multi-component: pydicom knows it, nothing here decodes it
PART2_REASON = ("The image is compressed with JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only), "
                "which this server cannot decode.")


def relabel_without_decoder(path: Path, **values) -> None:
    """Rewrite ``path`` as JPEG 2000 Part 2 (its pixels encapsulated, as that syntax requires)."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([ds.PixelData])
    ds.file_meta.TransferSyntaxUID = PART2
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def partly_shown_study(patient, tmp_path) -> Study:
    """Series 2: three CT slices, the middle one undecodable. Series 7: one undecodable image."""
    paths = write_ct_series(tmp_path / "ct", slices=3)
    relabel_without_decoder(paths[1])
    extra = tmp_path / "ct" / "other-series.dcm"
    extra.write_bytes(paths[0].read_bytes())
    relabel_without_decoder(extra, SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(), SeriesNumber=7,
                            InstanceNumber=1)
    summary = dicom_import(actor=importer(), paths=[str(p) for p in [*paths, extra]])
    assert summary.imported == 4 and summary.warnings == 2, summary.as_dict()
    study = Study.objects.get(study_uid=summary.studies[0])
    Study.objects.filter(pk=study.pk).update(patient=patient.patient)
    study.refresh_from_db()
    return study


def test_study_page_says_plainly_why_images_cannot_be_shown(patient_client: Client, partly_shown_study):
    study = partly_shown_study
    partial, blocked = study.series.get(number=2), study.series.get(number=7)
    response = patient_client.get(f"/studies/{study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    cards = html.split('aria-labelledby="series-heading"', 1)[1].split("</section>", 1)[0]
    assert "1 of 3 images cannot be shown here." in cards
    assert "This image cannot be shown here." in cards
    assert cards.count(PART2_REASON) == 2  # once per series card
    assert "included when you download a copy" in html
    # A series with something to show keeps its thumbnail and viewer; the other offers neither.
    assert f"/studies/{study.pk}/series/{partial.pk}/thumbnail.png" in html
    assert f"/studies/{study.pk}/series/{partial.pk}/view/" in html
    assert f"/studies/{study.pk}/series/{blocked.pk}/thumbnail.png" not in html
    assert f"/studies/{study.pk}/series/{blocked.pk}/view/" not in html


def test_frames_thumbnails_and_downloads_of_undecodable_images_answer_with_the_reason(patient_client: Client, partly_shown_study):
    study = partly_shown_study
    partial, blocked = study.series.get(number=2), study.series.get(number=7)
    bad = partial.instances.get(number=2)
    good = partial.instances.get(number=1)
    prefix = f"/studies/{study.pk}/series/{partial.pk}"

    response = patient_client.get(f"{prefix}/instances/{bad.pk}/frames/0.png")
    assert response.status_code == 422
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == PART2_REASON  # whole, not a cut-off exception
    assert patient_client.get(f"{prefix}/instances/{good.pk}/frames/0.png").status_code == 200

    thumb = patient_client.get(f"{prefix}/thumbnail.png")  # the middle of the images that can be shown
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    blocked_thumb = patient_client.get(f"/studies/{study.pk}/series/{blocked.pk}/thumbnail.png")
    assert blocked_thumb.status_code == 422 and blocked_thumb.content.decode() == PART2_REASON

    reauthenticate(patient_client)
    download = patient_client.get(f"{prefix}/instances/{bad.pk}/download/?frame=0")
    assert download.status_code == 422 and download.content.decode() == PART2_REASON
    assert views_of(study, "download") == 0  # nothing was handed over


def test_viewer_of_undecodable_images_says_why(patient_client: Client, partly_shown_study):
    study = partly_shown_study
    partial, blocked = study.series.get(number=2), study.series.get(number=7)

    response = patient_client.get(f"/studies/{study.pk}/series/{partial.pk}/view/")
    assert response.status_code == 200
    config = response.context["config"]
    assert [s["error"] for s in config["slices"]] == ["", PART2_REASON, ""]
    assert config["unshown"] == 1
    html = response.content.decode()
    assert "One image in this series cannot be shown here." in html and PART2_REASON in html

    response = patient_client.get(f"/studies/{study.pk}/series/{blocked.pk}/view/")
    assert response.status_code == 200
    html = response.content.decode()
    # The first (only) image cannot be shown: the stage says why instead of a broken picture.
    assert f'<p class="viewer-status" id="viewer-status" role="status">{PART2_REASON}</p>' in html
    assert 'id="viewer-image" hidden' in html


def test_verify_a_copy_finds_an_original_with_hash_like_uids(patient_client: Client, patient, tmp_path):
    """An anonymiser's 64-hex UIDs are imported (with a warning); Verify a copy must then find
    that original by the same UIDs, not call the patient's own file someone else's."""
    hex_sop, hex_study = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b", "ab" * 32
    [path] = write_ct_series(tmp_path / "anon", slices=1)
    ds = pydicom.dcmread(path)
    with synth.warnings_suppressed():  # pydicom warns that these are not valid UIDs: the point
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = hex_sop
        ds.StudyInstanceUID = hex_study
        ds.save_as(path, enforce_file_format=True)
    study = import_for(patient, [path])
    assert study.study_uid == hex_study

    ds.InstitutionName = "Elsewhere Clinic"
    copy = io.BytesIO()
    ds.save_as(copy, enforce_file_format=True)
    response = patient_client.post("/verify/", {"files": [SimpleUploadedFile("IM0001", copy.getvalue())]})
    [result] = response.context["results"]
    assert result.outcome == "modified" and result.instance.sop_uid == hex_sop
    assert {c.name for c in result.difference.changes} == {"Institution Name"}

    other = io.BytesIO()
    with synth.warnings_suppressed():
        ds.SOPInstanceUID = "cd" * 32  # another image of the same (hash-named) study
        ds.save_as(other, enforce_file_format=True)
    response = patient_client.post("/verify/", {"files": [SimpleUploadedFile("IM0002", other.getvalue())]})
    assert [r.outcome for r in response.context["results"]] == ["same_study"]

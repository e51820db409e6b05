"""Issue 19 items 6, 8 and 9: one counting rule for images and frames on the home page, the
study page and the viewer; thumbnails made ahead of time; DICOM capitals and modality codes in
plain words (formal meanings from pydicom's code dictionaries)."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from django.test import Client
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from imaging.dicom import terms
from imaging.models import Study
from imaging.services import rendering
from tests.imaging.test_views import import_for, write_ct_series

pytestmark = pytest.mark.django_db


def write_clip_study(folder: Path, *, patient_id: str = "LBX-CLIP-1") -> list[Path]:
    """One series holding a 10-frame clip (pydicom's emri_small.dcm) and one single picture:
    the shape of the demo ultrasound (a cine clip and a still)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for number, frames in ((1, 10), (2, 1)):
        ds = pydicom.dcmread(get_testdata_file("emri_small.dcm", download=False))
        ds.PatientID = patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber, ds.SeriesNumber = number, 1
        ds.StudyDescription, ds.SeriesDescription = "MR HEAD W CONTRAST", "AX T1 CINE"
        if frames == 1:
            ds.NumberOfFrames = 1
            ds.PixelData = ds.PixelData[: ds.Rows * ds.Columns * 2]
        path = folder / f"clip{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def clip_study(patient, tmp_path) -> Study:
    return import_for(patient, write_clip_study(tmp_path / "clip"))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_home_study_page_and_viewer_count_images_and_frames_alike(patient_client: Client, clip_study):
    """Before: 2 images on the home page, 11 on the study page, "Image 1 of 11" in the viewer."""
    home = text_of(patient_client.get("/").content.decode())
    assert "1 series, 2 images (11 frames)" in home
    assert "How we count" in home

    study = text_of(patient_client.get(f"/studies/{clip_study.pk}/").content.decode())
    assert "2 images (11 frames)" in study
    assert "11 images" not in study
    assert "How we count" in study

    series = clip_study.series.get()
    response = patient_client.get(f"/studies/{clip_study.pk}/series/{series.pk}/view/")
    config = response.context["config"]
    assert config["count"] == {"images": 2, "frames": 11}
    assert len(config["slices"]) == 11  # one step per frame
    assert [(s["image"], s["images"], s["frame"]) for s in config["slices"][:2]] == [(1, 2, 1), (1, 2, 2)]
    assert (config["slices"][-1]["image"], config["slices"][-1]["frame"]) == (2, None)
    assert "Image 1 of 2" in text_of(response.content.decode())


def test_single_frame_images_are_counted_without_frames(patient_client: Client, patient, tmp_path):
    import_for(patient, write_ct_series(tmp_path / "ct"))
    home = text_of(patient_client.get("/").content.decode())
    assert "1 series, 5 images" in home
    assert "frames" not in home.split("1 series, 5 images", 1)[1][:20]


@pytest.mark.parametrize(("recorded", "plain"), [
    ("CT CHEST W CONTRAST", "CT chest with contrast"),
    ("CT HEAD WO", "CT head without contrast"),
    ("MRI BRAIN WITHOUT CONTRAST", "MRI brain without contrast"),
    ("AXIAL 5MM C+", "Axial 5 mm with contrast"),
    ("AX T2 FSE", "Axial T2 FSE"),
    ("CHEST PA", "Chest PA"),
    ("US ABDOMEN COMPLETE", "US abdomen complete"),
    ("Knee, left (written by a person)", "Knee, left (written by a person)"),
    ("", ""),
])
def test_descriptions_in_capitals_read_as_plain_words(recorded, plain):
    assert terms.plain_description(recorded) == plain


def test_modality_meanings_come_from_dicoms_code_dictionary():
    from pydicom.sr.codedict import codes

    for code in ["CT", "MR", "DX", "CR", "US", "PT", "NM", "MG", "XA", "RF", "OT", "SR", "DOC"]:
        meaning = terms.modality_meaning(code)
        assert meaning, code
        assert terms.modality_plain(code), code
    assert terms.modality_meaning("CT") == codes.cid29.ComputedTomography.meaning
    assert terms.modality_meaning("ZZ") == "" and terms.modality_plain("ZZ") == ""
    assert terms.modality_codes("CT,PT") == ["CT", "PT"] and terms.modality_codes("CT\\PT\\CT") == ["CT", "PT"]


def test_pages_show_plain_descriptions_with_the_original_on_hover_and_explain_codes(patient_client: Client, clip_study):
    """Before: "MR HEAD W CONTRAST" in capitals and "MR" unexplained."""
    for url in ["/", f"/studies/{clip_study.pk}/"]:
        html = patient_client.get(url).content.decode()
        assert '<span class="as-recorded" title="As recorded: MR HEAD W CONTRAST">MR head with contrast</span>' in html
        assert '<abbr title="Magnetic Resonance">MR</abbr>' in html
        assert "What the letters mean" in html
        assert "pictures made with a strong magnet and radio waves" in html
    series = clip_study.series.get()
    html = patient_client.get(f"/studies/{clip_study.pk}/series/{series.pk}/view/").content.decode()
    assert "Axial T1 cine" in html and "<title>Series 1 · MR head with contrast" in html


def test_a_description_is_escaped_in_its_plain_form_and_in_its_title(patient_client: Client, clip_study):
    Study.objects.filter(pk=clip_study.pk).update(description='CT <B ONCLICK=X>HI</B> "W"')
    html = patient_client.get(f"/studies/{clip_study.pk}/").content.decode()
    assert "<b onclick" not in html.lower()
    assert "CT &lt;b onclick=x&gt;hi&lt;/b&gt; &quot;w&quot;" in html  # the plain form, escaped
    assert 'title="As recorded: CT &lt;B ONCLICK=X&gt;HI&lt;/B&gt; &quot;W&quot;"' in html


# --- Thumbnails made ahead of time (item 8) ------------------------------------------------------


def test_import_queues_the_thumbnails_on_commit(patient, tmp_path, django_capture_on_commit_callbacks):
    """Before: nothing was rendered until a page asked for each thumbnail."""
    with django_capture_on_commit_callbacks() as callbacks:
        study = import_for(patient, write_clip_study(tmp_path / "clip"))
    names = [getattr(c, "__qualname__", "") for c in callbacks]
    assert any("_import_staged" in n for n in names), names
    series = study.series.get()
    assert not rendering.thumbnail_ready(series)
    assert rendering.thumbnails_render(study.pk) == {"rendered": 1, "failed": 0}
    assert rendering.thumbnail_ready(series)
    assert rendering.thumbnails_render(study.pk) == {"rendered": 1, "failed": 0}  # idempotent (cached)


def test_thumbnails_are_squares_that_cover_their_placeholder(patient_client: Client, clip_study):
    import io

    from PIL import Image

    series = clip_study.series.get()
    data = patient_client.get(f"/studies/{clip_study.pk}/series/{series.pk}/thumbnail.png").content
    assert Image.open(io.BytesIO(data)).size == (rendering.THUMBNAIL_SIZE, rendering.THUMBNAIL_SIZE)


def test_viewer_data_is_the_viewers_json_audited_once_per_switch(patient_client: Client, clip_study):
    series = clip_study.series.get()
    url = f"/studies/{clip_study.pk}/series/{series.pk}/view.json"
    from audit.models import AccessEvent

    before = AccessEvent.objects.filter(study=clip_study, source="portal").count()
    response = patient_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    assert data["config"]["count"] == {"images": 2, "frames": 11}
    assert data["url"] == f"/studies/{clip_study.pk}/series/{series.pk}/view/"
    assert "Axial T1 cine" in data["title"] and data["headTitle"] == "Series 1 · MR head with contrast"
    events = AccessEvent.objects.filter(study=clip_study, source="portal")
    assert events.count() == before + 1
    assert events.latest("pk").details == {"page": "viewer", "series": series.pk}
    assert patient_client.post(url).status_code == 405


@pytest.fixture
def worker_storage(monkeypatch, settings, tmp_path):
    """This test's storage, shared with the worker process it starts (its LIGHTBOX_DATA_DIR)."""
    data = tmp_path / "data"
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(data))
    options = {"location": str(data / "storage"), "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750}
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
        "renders": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
    }


@pytest.fixture
def pixels_worker(transactional_db, tmp_path, worker_storage):
    """A real worker on the "pixels" queue only (where thumbnails are routed), on an empty broker."""
    from tests.conftest import WorkerProcess, purge_test_broker

    purge_test_broker()
    worker = WorkerProcess(tmp_path / "worker.log", queues="pixels")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def test_a_pixels_worker_renders_the_thumbnails_of_an_imported_study(patient, tmp_path, pixels_worker):
    """The import queues ``imaging.thumbnails_render_study`` on commit (routed to "pixels", away
    from the export worker); a real worker renders each series' thumbnail into the render cache
    before any page asks for it."""
    from tests.conftest import wait_for

    study = import_for(patient, write_clip_study(tmp_path / "clip"))
    series = study.series.get()
    wait_for(lambda: rendering.thumbnail_ready(series), timeout=60, what="the thumbnail rendered by the worker")

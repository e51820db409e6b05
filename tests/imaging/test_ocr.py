"""Text burned into pixels: OCR (imaging.dicom.ocr), its cache (imaging.pixel_text) and the task.

Real Tesseract (Debian's tesseract-ocr) reads real files; the only thing faked is Tesseract's
absence (its command pointed at a path that does not exist).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from imaging.dicom import ocr, synth
from imaging.models import Instance, PixelText, Study
from imaging.pixel_text import pixel_text_for_study, regions_for_masking
from imaging.services.ingest import dicom_import
from imaging.tasks import pixel_text_check_study
from tests.imaging.helpers import importer, pixel_text_for

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MISSING = "/nonexistent/bin/tesseract"



@pytest.fixture(autouse=True)
def _tesseract_installed() -> None:
    """Fail, never skip, without Tesseract: a skipped OCR test would hide a missing install step
    (the Makefile's system-deps installs tesseract-ocr for make test)."""
    installed, why = ocr.available()
    if not installed:
        pytest.fail(f"The OCR tests need Debian's tesseract-ocr: {why} (make system-deps)")


# --- Files ---------------------------------------------------------------------------------


def speckle(rows: int = 480, cols: int = 640, seed: int = 0) -> np.ndarray:
    """An ultrasound-like RGB frame: Rayleigh speckle in a fan, black margins."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    top = rows // 8
    fan = (yy > top) & (np.abs(xx - cols / 2) < (yy - top) * 0.75 + 10) & (yy < rows - rows // 10)
    gray = np.where(fan, np.clip(rng.rayleigh(45, (rows, cols)), 0, 230), 0).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def draw(frame: np.ndarray, texts: list[tuple[int, int, str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Draw white text; returns the new frame and the mask of pixels the text changed (its ink)."""
    image = Image.fromarray(frame)
    pen = ImageDraw.Draw(image)
    for x, y, text, size in texts:
        pen.text((x, y), text, font=ImageFont.truetype(FONT, size), fill=(255, 255, 255))
    out = np.asarray(image)
    return out, np.any(out != frame, axis=2)


def write_us(path: Path, frames: list[np.ndarray], *, name: str = "DOE^JANE", patient_id: str = "4455667",
             study_uid: str | None = None, extra: dict | None = None) -> Path:
    multi = len(frames) > 1
    sop_class = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19800315"
    ds.StudyDate = "20240312"
    ds.Modality = "US"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "NO"  # the header says no: OCR reads the pixels anyway
    rows, cols = frames[0].shape[:2]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if multi:
        ds.NumberOfFrames = len(frames)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.stack(frames).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_slice(directory: Path) -> Path:
    identity = synth.Identity("Roe", "Richard", "CT1", "", dt.date(1970, 1, 1))
    study = synth.StudyHeader(description="CT CHEST", date=dt.date(2025, 1, 1), time=dt.time(9, 0),
                              institution="General", referring_physician="", accession="A1", modality="CT")
    return synth.write_ct_series(directory, identity, study, slices=1, size=512)[0]


def covered(ink: np.ndarray, regions: list[dict], frame: int = 0) -> bool:
    boxes = np.zeros_like(ink)
    for region in regions:
        if region["frame"] == frame:
            x, y, w, h = region["box"]
            boxes[y:y + h, x:x + w] = True
    return bool(np.all(boxes[ink]))


def with_kind(result: ocr.OcrResult, kind: str) -> list[dict]:
    return [r for r in result.regions if kind in r["kinds"]]


# --- OCR -----------------------------------------------------------------------------------


def test_name_and_id_drawn_on_an_ultrasound_are_found_and_covered(tmp_path):
    frame, ink = draw(speckle(), [(12, 8, "JANE DOE", 15), (12, 30, "MRN 4455667", 15)])
    result = ocr.read_instance(write_us(tmp_path / "us.dcm", [frame]))

    assert result.status == "found"
    assert result.engine.startswith("tesseract ")
    assert result.frames_checked == 1
    assert {"name", "patient_id"} <= set(result.kinds)
    names, ids = with_kind(result, "name"), with_kind(result, "patient_id")
    assert names and ids
    assert "4455667" in " ".join(r["text"] for r in ids)
    # Every pixel of the drawn text lies inside a box that will be masked.
    assert covered(ink, names + ids)


def test_tiny_text_on_a_256_pixel_frame_is_read(tmp_path):
    # 9-point DejaVu: capitals 7 pixels tall, unread at 1x (measured), read once upscaled.
    frame, ink = draw(speckle(256, 256, seed=3), [(4, 3, "ID 4455667", 9)])
    result = ocr.read_instance(write_us(tmp_path / "small.dcm", [frame]))

    assert "patient_id" in result.kinds
    assert covered(ink, with_kind(result, "patient_id"))


def test_text_only_on_the_second_frame_is_found_on_that_frame(tmp_path):
    plain = [speckle(seed=s) for s in range(3)]
    marked, ink = draw(plain[1], [(12, 8, "MRN 4455667", 15)])
    result = ocr.read_instance(write_us(tmp_path / "cine.dcm", [plain[0], marked, plain[2]]))

    assert result.status == "found"
    assert result.frames_checked == 3
    ids = with_kind(result, "patient_id")
    assert ids and {r["frame"] for r in ids} == {1}
    assert {r["frame"] for r in result.regions} == {1}
    assert covered(ink, ids, frame=1)


def test_frames_of_several_files_share_a_call_but_keep_their_own_results(tmp_path):
    files = [ct_slice(tmp_path / f"ct{i}") for i in range(3)]
    ds = pydicom.dcmread(files[1])
    arr = ds.pixel_array.copy()
    image = Image.fromarray((arr >> 4).astype(np.uint8))
    ImageDraw.Draw(image).text((8, 8), "ROE RICHARD", font=ImageFont.truetype(FONT, 16), fill=255)
    arr[np.asarray(image) == 255] = 4095  # burned in at the top of the stored range
    ds.PixelData = arr.tobytes()
    ds.save_as(files[1])

    results = ocr.read_instances(files)

    assert [r.status for r in results] == ["none", "found", "none"]
    assert results[1].kinds == ["name"]
    assert all(r["frame"] == 0 and r["box"][1] < 40 for r in results[1].regions)


def test_ct_slice_without_text_is_none(tmp_path):
    result = ocr.read_instance(ct_slice(tmp_path))

    assert result.status == "none"
    assert result.frames_checked == 1
    assert result.regions == [] and result.kinds == []


def test_file_without_pixel_data_is_not_checked():
    result = ocr.read_instance(synth.bundled_file("rtplan.dcm"))

    assert result.status == "not_checked"
    assert "no pixel data" in result.reason
    assert result.frames_checked == 0


def test_missing_tesseract_is_not_checked_with_the_reason(tmp_path):
    frame, _ = draw(speckle(), [(12, 8, "MRN 4455667", 15)])
    path = write_us(tmp_path / "us.dcm", [frame])

    assert ocr.available(MISSING) == (False, ocr.NOT_INSTALLED)
    result = ocr.read_instance(path, tesseract_cmd=MISSING)
    assert result.status == "not_checked"
    assert result.reason == ocr.NOT_INSTALLED
    assert result.regions == []


def test_a_run_past_its_time_limit_is_not_checked(tmp_path, monkeypatch):
    # The limit is ours (seconds per frame); a millisecond is less than Tesseract needs to start.
    monkeypatch.setattr(ocr, "SECONDS_PER_FRAME", 0)
    monkeypatch.setattr(ocr, "_SECONDS_PER_CALL", 0.001)
    frame, _ = draw(speckle(), [(12, 30, "MRN 4455667", 15)])
    result = ocr.read_instance(write_us(tmp_path / "us.dcm", [frame]))

    assert result.status == "not_checked"
    assert result.reason == "Reading the image for text took too long."


def test_identifiers_from_header_in_printed_forms(tmp_path):
    path = write_us(tmp_path / "us.dcm", [speckle(64, 64)], name="O'Brien^Mary-Anne",
                    extra={"AccessionNumber": "ACC778", "OtherPatientIDs": ["X-99", "Y100"],
                           "InstitutionName": "St Elsewhere General", "ReferringPhysicianName": "Kildare^James"})
    ids = ocr.identifiers_from_header(path)

    assert {"O'Brien", "Mary-Anne", "Kildare", "James"} <= set(ids["name"])
    assert ids["patient_id"] == ["4455667", "X-99", "Y100"]
    assert ids["accession"] == ["ACC778"]
    assert {"19800315", "1980-03-15", "15/03/1980", "15.03.1980", "03/15/1980", "15-MAR-1980"} <= set(ids["birth_date"])
    assert {"20240312", "12/03/2024", "03/12/2024"} <= set(ids["date"])
    assert {"St Elsewhere General", "Elsewhere", "General"} <= set(ids["institution"])


def test_a_printed_date_is_matched_in_another_format(tmp_path):
    frame, _ = draw(speckle(), [(400, 8, "12.03.2024", 15)])
    result = ocr.read_instance(write_us(tmp_path / "us.dcm", [frame]))

    assert "date" in result.kinds


# --- Cache and task ------------------------------------------------------------------------


def imported(tmp_path: Path, files: list[Path]) -> list[Instance]:
    summary = dicom_import(actor=importer(), paths=files)
    assert summary.imported == len(files), [f.reason for f in summary.files]
    return list(Instance.objects.order_by("pk"))


@pytest.mark.django_db
def test_pixel_text_for_caches_and_refresh_reads_again(tmp_path):
    frame, _ = draw(speckle(), [(12, 8, "JANE DOE", 15), (12, 30, "MRN 4455667", 15)])
    (instance,) = imported(tmp_path, [write_us(tmp_path / "us.dcm", [frame])])

    before = ocr.frames_read()
    row = pixel_text_for(instance=instance)
    assert ocr.frames_read() == before + 1
    assert row.status == PixelText.Status.FOUND
    assert {"name", "patient_id"} <= set(row.kinds)
    assert row.engine.startswith("tesseract ")
    checked_at = row.checked_at

    again = pixel_text_for(instance=instance)
    assert ocr.frames_read() == before + 1  # not read again
    assert again.pk == row.pk and again.checked_at == checked_at

    refreshed = pixel_text_for(instance=instance, refresh=True)
    assert ocr.frames_read() == before + 2
    assert refreshed.pk == row.pk and refreshed.checked_at > checked_at
    assert PixelText.objects.count() == 1

    masks = regions_for_masking(refreshed)
    assert masks and all(set(m) == {"frame", "box"} and len(m["box"]) == 4 for m in masks)


@pytest.mark.django_db
def test_missing_tesseract_is_cached_as_not_checked_then_read_once_installed(tmp_path, settings):
    frame, _ = draw(speckle(), [(12, 30, "MRN 4455667", 15)])
    (instance,) = imported(tmp_path, [write_us(tmp_path / "us.dcm", [frame])])

    settings.OCR_TESSERACT_CMD = MISSING
    row = pixel_text_for(instance=instance)
    assert row.status == PixelText.Status.NOT_CHECKED
    assert row.reason == ocr.NOT_INSTALLED

    settings.OCR_TESSERACT_CMD = None
    row = pixel_text_for(instance=instance)
    assert row.status == PixelText.Status.FOUND


@pytest.mark.django_db
def test_task_fills_a_row_for_each_image_of_the_study(tmp_path):
    study_uid = generate_uid()
    marked, _ = draw(speckle(seed=1), [(12, 30, "MRN 4455667", 15)])
    files = [
        write_us(tmp_path / "a.dcm", [marked], study_uid=study_uid),
        write_us(tmp_path / "b.dcm", [speckle(seed=2)], study_uid=study_uid),
    ]
    instances = imported(tmp_path, files)
    study = Study.objects.get()

    counts = pixel_text_check_study(study.pk)

    assert counts == {"found": 1, "none": 1, "not_checked": 0}
    rows = {row.instance_id: row for row in PixelText.objects.all()}
    assert set(rows) == {inst.pk for inst in instances}
    assert sorted(row.status for row in rows.values()) == ["found", "none"]
    # A second run (a redelivery) reads nothing again.
    before = ocr.frames_read()
    assert pixel_text_check_study(study.pk) == counts
    assert ocr.frames_read() == before
    assert pixel_text_for_study(study=study) == counts


@pytest.mark.django_db
def test_task_for_a_missing_study_does_nothing():
    assert pixel_text_check_study(987654) == {}
    assert PixelText.objects.count() == 0

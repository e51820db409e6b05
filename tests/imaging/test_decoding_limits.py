"""Untrusted pixels are size-checked before decoding, everywhere (docs/security.md §21):
``imaging.dicom.limits`` itself, then Verify a copy, the import, the viewer's renders, OCR and
text masking, each with a decompression bomb generated here (tests/imaging/bombs.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from imaging.dicom import compare, limits, ocr, render
from imaging.dicom.deidentify_pixels import mask_regions
from imaging.errors import RenderError
from imaging.models import Instance, PixelStatus
from imaging.services.ingest import dicom_import
from imaging.services.rendering import render_frame
from tests.conftest import login_verified
from tests.imaging import bombs
from tests.imaging.helpers import importer
from tests.imaging.test_views import import_for, write_ct_series

pytestmark = pytest.mark.django_db
URL = "/verify/"
MIB = 1024**2
ROOT = Path(__file__).resolve().parents[2]


def geometry_header(**values) -> Dataset:
    """A header with these values; bytes are put in raw, as a file would hold them (pydicom
    refuses to assign an invalid IS such as "abc", but reads one from a file)."""
    ds = Dataset()
    defaults = {"Rows": 512, "Columns": 512, "NumberOfFrames": "4", "SamplesPerPixel": 1, "BitsAllocated": 16}
    for keyword, value in {**defaults, **values}.items():
        if isinstance(value, bytes):
            tag = pydicom.datadict.tag_for_keyword(keyword)
            vr = pydicom.datadict.dictionary_VR(tag)
            ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        elif value is not None:
            setattr(ds, keyword, value)
    return ds


# --- limits: the one check ---------------------------------------------------------------------


def test_decoded_size_is_frames_rows_columns_samples_bytes():
    g = limits.check_decoded_size(geometry_header(SamplesPerPixel=3, BitsAllocated=8, PhotometricInterpretation="RGB"))
    assert (g.frames, g.rows, g.columns, g.samples, g.bytes_per_sample) == (4, 512, 512, 3, 1)
    assert g.decoded_bytes == 4 * 512 * 512 * 3
    # 1-bit data is unpacked to a byte a pixel by the decoders: counted as one byte.
    assert limits.check_decoded_size(geometry_header(BitsAllocated=1)).decoded_bytes == 4 * 512 * 512


def test_the_limit_is_inclusive_and_one_byte_more_is_refused():
    size = 4 * 512 * 512 * 2
    assert limits.check_decoded_size(geometry_header(), limit=size).decoded_bytes == size
    with pytest.raises(limits.PixelsTooLarge) as excinfo:
        limits.check_decoded_size(geometry_header(), limit=size - 1)
    assert excinfo.value.decoded_bytes == size and excinfo.value.limit == size - 1
    assert "2.1 MB decoded (4 frame(s) of 512 x 512 pixels)" in excinfo.value.reason
    with pytest.raises(limits.PixelsTooLarge, match="One frame"):
        limits.check_decoded_size(geometry_header(), frame_limit=512 * 512 * 2 - 1)


def test_the_default_limit_is_the_setting(settings):
    settings.DICOM_MAX_DECODED_BYTES = 4 * 512 * 512 * 2 - 1
    with pytest.raises(limits.PixelsTooLarge):
        limits.check_decoded_size(geometry_header())
    settings.DICOM_MAX_DECODED_BYTES = 4 * 512 * 512 * 2
    limits.check_decoded_size(geometry_header())


def test_missing_or_zero_frames_are_one_frame():
    assert limits.geometry(geometry_header(NumberOfFrames=None)).frames == 1
    assert limits.geometry(geometry_header(NumberOfFrames="0")).frames == 1


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"Rows": None}, "the header has no Rows"),
        ({"Columns": 0}, "Columns is 0"),
        ({"Rows": -5}, "Rows is -5"),
        ({"NumberOfFrames": "-3"}, "Number of Frames is -3"),
        ({"NumberOfFrames": b"2.5"}, "Number of Frames is not a whole number ('2.5')"),
        ({"NumberOfFrames": b"abc"}, "Number of Frames"),
        ({"NumberOfFrames": "99999999999"}, "Number of Frames is 99999999999"),
        ({"Rows": [512, 512]}, "Rows is not a whole number"),
        ({"SamplesPerPixel": 2}, "Samples per Pixel is 2"),
        ({"BitsAllocated": 12}, "Unsupported Bits Allocated (12)"),
        ({"BitsAllocated": None}, "the header has no Bits Allocated"),
        ({"Rows": 65000, "Columns": 65000}, "Absurd image size"),
    ],
)
def test_bad_header_values_are_refused_with_a_sentence(values, fragment):
    with pytest.raises(limits.InvalidPixelHeader) as excinfo:
        limits.check_decoded_size(geometry_header(**values))
    assert fragment in excinfo.value.reason


def pixel_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_native_pixel_data_must_hold_the_frames_the_header_counts():
    def check(stored_frames: float) -> None:
        ds = pixel_dataset(bombs.native(rows=64, columns=64, frames=3, stored_frames=stored_frames))
        limits.check_pixel_data(ds, limits.geometry(ds))

    check(3)
    with pytest.raises(limits.PixelDataMismatch, match="truncated"):
        check(2.5)
    with pytest.raises(limits.PixelDataMismatch, match="more than the 3 frame"):
        check(4)


def test_rle_fragments_must_match_the_frames():
    ds = pixel_dataset(bombs.rle_bomb(rows=64, columns=64, frames=3))
    limits.check_pixel_data(ds, limits.geometry(ds))
    extra = pixel_dataset(bombs.rle_bomb(rows=64, columns=64, frames=3, extra_fragments=5))
    with pytest.raises(limits.PixelDataMismatch, match="holds 8 frames; the header says 3"):
        limits.check_pixel_data(extra, limits.geometry(extra))
    missing = pixel_dataset(bombs.rle_bomb(rows=64, columns=64, frames=3))
    missing.NumberOfFrames = 5
    with pytest.raises(limits.PixelDataMismatch, match="3 fragment"):
        limits.check_pixel_data(missing, limits.geometry(missing))


def test_an_offset_table_listing_other_frames_is_refused():
    ds = bombs.header(rows=64, columns=64, frames=2)
    frame = bombs.rle_frame(64, 64)
    ds.PixelData = encapsulate([frame, frame], has_bot=True)
    ds.NumberOfFrames = 2
    limits.check_pixel_data(ds, limits.geometry(ds))
    ds.PixelData = encapsulate([frame, frame, frame], has_bot=True)
    with pytest.raises(limits.PixelDataMismatch):
        limits.check_pixel_data(ds, limits.geometry(ds))


def deflated(pixels: bytes, *, rows: int, columns: int) -> bytes:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to ``len(pixels)`` and more."""
    ds = bombs.header(rows=rows, columns=columns, frames=1, transfer_syntax=DeflatedExplicitVRLittleEndian)
    ds.PixelData = pixels
    ds["PixelData"].VR = "OB"
    return bombs.to_bytes(ds)


def test_a_deflated_file_is_inflated_a_chunk_at_a_time_against_the_limit():
    data = deflated(bytes(4096 * 4096), rows=4096, columns=4096)  # 16 MiB of zeros: 16 KB on disk
    assert len(data) < 100_000
    limits.check_inflated_size(io.BytesIO(data), limit=17 * MIB)
    with pytest.raises(limits.PixelsTooLarge, match="inflates to more than"):
        limits.check_inflated_size(io.BytesIO(data), limit=8 * MIB)
    # Not deflated: nothing to inflate, whatever its size.
    limits.check_inflated_size(io.BytesIO(bombs.rle_bomb(rows=64, columns=64, frames=1)), limit=1)


# --- Verify a copy --------------------------------------------------------------------------------


@pytest.fixture
def originals(patient, tmp_path) -> list[Path]:
    paths = write_ct_series(tmp_path / "mine", slices=3, patient_id="LBX-MINE")
    import_for(patient, paths)
    return paths


def uids_of(path: Path) -> dict[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {"sop_uid": str(ds.SOPInstanceUID), "study_uid": str(ds.StudyInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID), "patient_id": str(ds.PatientID)}


def rle_copy(path: Path, change=None) -> bytes:
    """The original re-encoded as RLE Lossless (the same picture, so it must be decoded to compare)."""
    ds = pydicom.dcmread(path)
    if change is not None:
        change(ds)
    ds.compress(RLELossless, generate_instance_uid=False)
    return bombs.to_bytes(ds)


def post(client: Client, **files: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(URL, {"files": [SimpleUploadedFile(n, d, content_type="application/dicom") for n, d in files.items()]})


def by_name(response) -> dict:
    return {r.name: r for r in response.context["results"]}


@pytest.mark.django_db(transaction=True)
def test_the_decompression_bomb_sent_to_verify_a_copy_raises_peak_memory_by_less_than_200_mb(
    patient, originals, tmp_path, dicom_storage,
):
    """The issue's "Done means": an 8 MB RLE file claiming 8 frames of 8192 x 8192 (512 MiB
    decoded) goes through the real view in a process of its own, whose peak memory is read
    before and after (ru_maxrss). Before the size check it grew by about 620 MB."""
    client = login_verified(Client(), patient)
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(bombs.rle_bomb(**uids_of(originals[0])))
    assert bomb.stat().st_size < 9 * MIB
    warmup = tmp_path / "warmup.dcm"
    warmup.write_bytes(rle_copy(originals[1]))
    db = django_settings.DATABASES["default"]
    config = {
        "database_url": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "storage": str(dicom_storage),
        "cookie": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
        "warmup": str(warmup),
        "files": [str(bomb)],
    }
    child = subprocess.run([sys.executable, "-m", "tests.imaging.verify_memory_child"], input=json.dumps(config),
                           capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout)
    assert report["status"] == 200
    growth_mb = (report["after_kib"] - report["before_kib"]) / 1024
    assert growth_mb < 200, f"peak memory grew by {growth_mb:.0f} MB"
    assert report["results"] == [{"name": "bomb.dcm", "outcome": "modified", "pixels": "too_large"}]
    assert "The picture was not compared: it is too large to compare here." in report["html"]


def test_a_file_too_large_to_compare_says_so_and_the_others_are_still_compared(patient_client: Client, originals):
    bomb = bombs.rle_bomb(**uids_of(originals[0]))
    response = post(patient_client, **{"bomb.dcm": bomb, "same.dcm": rle_copy(originals[1])})
    assert response.status_code == 200
    results = by_name(response)
    assert results["bomb.dcm"].outcome == "modified"
    assert results["bomb.dcm"].difference.pixels == "too_large"
    assert "537 MB decoded (8 frame(s) of 8192 x 8192 pixels)" in results["bomb.dcm"].difference.pixels_reason
    assert results["same.dcm"].difference.pixels == "same_picture"
    html = response.content.decode()
    assert "The picture was not compared: it is too large to compare here." in html
    assert "537 MB decoded" in html


def test_one_check_shares_one_budget_and_says_which_files_were_not_compared(patient_client: Client, originals, settings):
    one = 128 * 128 * 2  # CT_small: 128 x 128, 16 bits
    settings.VERIFY_COPY_MAX_DECODED_BYTES = 2 * one

    def paint(ds):
        arr = ds.pixel_array.copy()
        arr[0:4, 0:4] = 0
        ds.PixelData = arr.tobytes()

    response = post(patient_client, **{"a.dcm": rle_copy(originals[0]), "b.dcm": rle_copy(originals[1], paint),
                                       "c.dcm": rle_copy(originals[2])})
    results = by_name(response)
    assert results["a.dcm"].difference.pixels == "same_picture"
    assert results["b.dcm"].difference.pixels == "changed"
    assert results["c.dcm"].difference.pixels == "over_budget"
    assert "Together with the other files of this check" in response.content.decode()


def test_pixel_data_that_disagrees_with_its_header_is_not_decoded(patient_client: Client, originals):
    lying = bombs.rle_bomb(rows=128, columns=128, frames=1, extra_fragments=3, **uids_of(originals[0]))
    response = post(patient_client, **{"lying.dcm": lying})
    difference = by_name(response)["lying.dcm"].difference
    assert difference.pixels == "unreadable"
    assert "holds 4 frames; the header says 1" in difference.pixels_reason
    assert "does not match its own header" in response.content.decode()


def test_a_deflated_upload_that_inflates_past_the_limit_is_not_read(patient_client: Client, originals):
    big = deflated(bytes(8192 * 8192 + 8192 * 1024), rows=8192 + 1024, columns=8192)  # 72 MiB inflated
    assert len(big) < 200_000
    response = post(patient_client, **{"deflated.dcm": big, "same.dcm": originals[1].read_bytes()})
    results = by_name(response)
    assert results["deflated.dcm"].outcome == "too_large"
    assert results["same.dcm"].outcome == "identical"
    assert "Too large to check." in response.content.decode()


def test_comparing_a_multi_frame_copy_decodes_a_frame_at_a_time():
    """Two 16-frame files (8 MiB decoded each): the comparison's peak of traced allocations
    (numpy and the decoders report theirs to tracemalloc) stays near two frames, not two files."""
    import tracemalloc

    original = bombs.rle_bomb(rows=512, columns=1024, frames=16)
    ds = pydicom.dcmread(io.BytesIO(original))
    arr = ds.pixel_array.copy()
    arr[3, 0:8, 0:8] = 1
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    del arr
    upload = bombs.to_bytes(ds)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        difference = compare.diff_files(io.BytesIO(upload), io.BytesIO(original))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert difference.pixels == "changed"
    assert difference.pixels_changed_fraction == pytest.approx(64 / (16 * 512 * 1024))
    # The two files as read (1 MiB RLE + 8 MiB native) plus a few frames of 0.5 MiB, not 2 x 8 MiB decoded.
    assert peak < 14 * MIB, peak


# --- Import, rendering, OCR, masking ---------------------------------------------------------------


BIG = {"frames": 16}  # 16 MB on disk, 1 GiB decoded: past the 512 MiB limit the tests below set


@pytest.fixture
def half_gib_limit(settings):
    """A hospital that set DICOM_MAX_DECODED_BYTES to 512 MiB (the default, 4 GiB, would need a
    64 MB bomb on disk to pass it)."""
    settings.DICOM_MAX_DECODED_BYTES = 512 * MIB


def test_import_of_a_bomb_stores_it_marked_undecodable_with_the_reason(tmp_path, half_gib_limit):
    path = tmp_path / "bomb.dcm"
    path.write_bytes(bombs.rle_bomb(**BIG))
    summary = dicom_import(actor=importer(), paths=[path])
    outcome = summary.files[0]
    assert outcome.outcome == "imported"
    assert any("1,074 MB decoded" in w for w in outcome.warnings), outcome.warnings
    instance = Instance.objects.get(sop_uid=outcome.sop_uid)
    assert instance.pixel_status == PixelStatus.UNDECODABLE
    assert "more than the 537 MB allowed" in instance.pixel_error
    # Rendering refuses through the existing error path, with the same reason.
    with pytest.raises(RenderError, match="1,074 MB decoded"):
        render_frame(instance)


def test_import_refuses_pixel_data_that_disagrees_with_its_header(tmp_path):
    (tmp_path / "extra.dcm").write_bytes(bombs.rle_bomb(rows=64, columns=64, frames=2, extra_fragments=6))
    (tmp_path / "more.dcm").write_bytes(bombs.native(rows=64, columns=64, frames=2, stored_frames=40))
    frames = bombs.header(rows=64, columns=64, frames=None, transfer_syntax=pydicom.uid.ExplicitVRLittleEndian)
    frames[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 4, b"1.5 ", 0, False, True)
    frames.PixelData = bytes(64 * 64)
    (tmp_path / "frames.dcm").write_bytes(bombs.to_bytes(frames))
    summary = dicom_import(actor=importer(), paths=[tmp_path])
    reasons = {Path(f.path).name: (f.outcome, f.reason) for f in summary.files}
    assert reasons["extra.dcm"] == ("rejected", "The RLE pixel data holds 8 frames; the header says 2.")
    assert reasons["more.dcm"][0] == "rejected" and "more than the 2 frame(s)" in reasons["more.dcm"][1]
    assert reasons["frames.dcm"][0] == "rejected" and "Number of Frames is not a whole number" in reasons["frames.dcm"][1]


def test_import_refuses_a_deflated_file_that_inflates_past_the_limit(tmp_path, settings):
    settings.DICOM_MAX_DECODED_BYTES = 8 * MIB
    (tmp_path / "deflated.dcm").write_bytes(deflated(bytes(4096 * 4096), rows=4096, columns=4096))
    summary = dicom_import(actor=importer(), paths=[tmp_path])
    assert summary.files[0].outcome == "rejected"
    assert "inflates to more than 8.4 MB" in summary.files[0].reason


def test_render_of_a_bomb_refuses_before_decoding(half_gib_limit):
    with pytest.raises(RenderError, match="1,074 MB decoded"):
        render.render(io.BytesIO(bombs.rle_bomb(**BIG)), frame=0)
    assert render.stream_decode_problem(io.BytesIO(bombs.rle_bomb(**BIG))).startswith("The image would take 1,074 MB decoded")


def test_the_viewer_answers_a_bomb_with_its_reason(patient_client: Client, patient, tmp_path, half_gib_limit):
    path = tmp_path / "bomb.dcm"
    path.write_bytes(bombs.rle_bomb(**BIG))
    summary = dicom_import(actor=importer(), paths=[path])
    instance = Instance.objects.select_related("series__study").get(sop_uid=summary.files[0].sop_uid)
    type(instance.series.study).objects.filter(pk=instance.series.study_id).update(patient=patient.patient)
    url = reverse("imaging-frame", kwargs={"study_id": instance.series.study_id, "series_id": instance.series_id,
                                           "instance_id": instance.pk, "frame": 0})
    response = patient_client.get(url)
    assert response.status_code == 422, response.status_code
    assert "1,074 MB decoded" in response.content.decode()


def test_ocr_does_not_decode_past_the_limit(settings):
    settings.DICOM_MAX_DECODED_BYTES = 1 * MIB
    result = ocr.read_instance(io.BytesIO(bombs.rle_bomb(rows=1024, columns=1024, frames=2)))
    assert result.status == "not_checked"
    assert "2.1 MB decoded" in result.reason and "It was not read for text." in result.reason
    assert result.frames_checked == 0


def test_masking_text_does_not_decode_past_the_limit(settings):
    settings.DICOM_MAX_DECODED_BYTES = 1 * MIB
    ds = pydicom.dcmread(io.BytesIO(bombs.rle_bomb(rows=1024, columns=1024, frames=2)))
    with pytest.raises(limits.PixelsTooLarge):
        mask_regions(ds, [{"frame": 0, "box": [0, 0, 10, 10]}])
    settings.DICOM_MAX_DECODED_BYTES = 2 * MIB
    assert mask_regions(ds, [{"frame": 0, "box": [0, 0, 10, 10]}]) is not None

from __future__ import annotations

import datetime as dt
import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from imaging.dicom import limits, render, synth
from imaging.errors import RenderError
from imaging.models import Instance, Series
from imaging.services.ingest import dicom_import
from imaging.services.rendering import render_frame, render_thumbnail, viewer_metadata
from tests.imaging.conftest import SAMPLES
from tests.imaging.helpers import importer, series_slices

pytestmark = pytest.mark.django_db


def image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def imported(*paths) -> list[Instance]:
    summary = dicom_import(actor=importer(), paths=list(paths))
    assert summary.rejected == 0, [f.reason for f in summary.files]
    return [Instance.objects.get(sop_uid=f.sop_uid) for f in summary.files]


@pytest.fixture
def ct_series(inputs) -> Series:
    identity = synth.Identity("Rivera", "Sam", "R1", "STEXAMPLE", dt.date(1990, 5, 6))
    study = synth.StudyHeader(description="CT CHEST", date=dt.date(2025, 2, 3), time=dt.time(9, 0),
                              institution="St. Example Hospital", referring_physician="", accession="A1",
                              modality="CT")
    paths = synth.write_ct_series(inputs / "ct", identity, study, slices=5, size=64)
    # Import in reverse so that display order has to come from geometry, not arrival.
    dicom_import(actor=importer(), paths=list(reversed(paths)))
    return Series.objects.get()


def cache_files(root) -> list:
    return sorted(p for p in (root / "renders").rglob("*") if p.is_file()) if (root / "renders").exists() else []


def test_render_is_cached_and_served_from_cache(ct_series, dicom_storage):
    instance = ct_series.instances.first()
    first = render_frame(instance)
    assert image(first).size == (64, 64)
    [cached] = cache_files(dicom_storage)
    assert cached.read_bytes() == first
    mtime = cached.stat().st_mtime_ns

    assert render_frame(instance) == first
    assert cache_files(dicom_storage) == [cached] and cached.stat().st_mtime_ns == mtime

    # What is served is the cached object itself, without decoding the DICOM again.
    cached.write_bytes(b"sentinel")
    assert render_frame(instance) == b"sentinel"

    # Another window or format is another entry.
    render_frame(instance, center=-600, width=1500)
    render_frame(instance, fmt="webp")
    assert len(cache_files(dicom_storage)) == 3


def test_window_changes_the_pixels(ct_series):
    instance = ct_series.instances.first()
    soft = image(render_frame(instance, center=40, width=400))
    lung = image(render_frame(instance, center=-600, width=1500))
    default = image(render_frame(instance))
    assert soft.tobytes() != lung.tobytes()
    # The file's first window is 40/400 (soft tissue): the default render is that window.
    assert default.tobytes() == soft.tobytes()
    # Air (-1000 HU) is black at a soft-tissue window; at -600/1500 it is a dark grey:
    # ((-1000 + 600.5) / 1499 + 0.5) * 255 = 59 (PS3.3 C.11.2.1.2.1), give or take the noise.
    assert soft.getpixel((0, 0)) == 0 and 45 <= lung.getpixel((0, 0)) <= 75


def test_webp_output(ct_series):
    img = image(render_frame(ct_series.instances.first(), fmt="webp"))
    assert img.format == "WEBP" and img.size == (64, 64)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"frame": 1}, "does not exist"),
        ({"frame": -1}, "does not exist"),
        ({"center": 40}, "both"),
        ({"center": 40, "width": 0}, "out of range"),
        ({"center": float("nan"), "width": 400}, "out of range"),
        ({"fmt": "gif"}, "Unsupported"),
    ],
)
def test_bad_render_arguments(ct_series, kwargs, fragment):
    with pytest.raises(RenderError) as excinfo:
        render_frame(ct_series.instances.first(), **kwargs)
    assert fragment in excinfo.value.reason


def test_monochrome1_is_inverted(inputs):
    mono2 = synth.write_instance(inputs / "m2.dcm", seed=7)
    mono1 = synth.write_instance(inputs / "m1.dcm", seed=7, values={"PhotometricInterpretation": "MONOCHROME1"})
    a, b = imported(mono2, mono1)
    assert b.meta["photometric"] == "MONOCHROME1"
    pa, pb = image(render_frame(a, center=0, width=2000)), image(render_frame(b, center=0, width=2000))
    assert all(x + y == 255 for x, y in zip(pa.tobytes(), pb.tobytes(), strict=True))
    assert len(set(pa.tobytes())) > 10  # a real gradient, not a constant image


def test_multiframe_renders_only_existing_frames():
    [instance] = imported(SAMPLES / "SC_rgb_rle_2frame.dcm")
    assert instance.frames == 2
    first, second = image(render_frame(instance, frame=0)), image(render_frame(instance, frame=1))
    assert first.mode == "RGB" and first.size == (100, 100)
    assert first.tobytes() != second.tobytes()
    with pytest.raises(RenderError):
        render_frame(instance, frame=2)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("examples_palette.dcm", "RGB"),  # PALETTE COLOR
        ("examples_ybr_color.dcm", "RGB"),  # YBR_FULL_422, JPEG baseline, multi-frame
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "RGB"),  # YBR_FULL
        ("MR_small_bigendian.dcm", "L"),  # explicit big endian
        ("JPGExtended.dcm", "L"),  # JPEG extended 12-bit
        ("MR_small_jpeg_ls_lossless.dcm", "L"),  # JPEG-LS
        ("MR_small_jp2klossless.dcm", "L"),  # JPEG 2000
        ("MR_small_RLE.dcm", "L"),  # RLE
    ],
)
def test_photometric_and_transfer_syntaxes(name, mode):
    [instance] = imported(SAMPLES / name)
    assert image(render_frame(instance)).mode == mode


def test_deflated_transfer_syntax(inputs):
    copy = synth.with_identity(SAMPLES / "image_dfl.dcm", inputs / "dfl.dcm", patient_id="DFL1")
    [instance] = imported(copy)
    assert instance.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert image(render_frame(instance)).size == (512, 512)


def test_non_image_cannot_be_rendered():
    [instance] = imported(SAMPLES / "rtplan.dcm")
    with pytest.raises(RenderError) as excinfo:
        render_frame(instance)
    assert "no image" in excinfo.value.reason


def test_thumbnail_of_series_is_the_middle_slice_and_cached(ct_series, dicom_storage):
    thumb = image(render_thumbnail(ct_series))
    assert max(thumb.size) <= 160
    slices = series_slices(ct_series)
    middle = Instance.objects.get(sop_uid=slices[len(slices) // 2]["sop_uid"])
    [cached] = cache_files(dicom_storage)
    assert middle.sha256 in str(cached)
    render_thumbnail(ct_series)
    assert len(cache_files(dicom_storage)) == 1


def test_thumbnail_of_a_cine_loop_uses_its_middle_frame():
    [instance] = imported(SAMPLES / "examples_ybr_color.dcm")
    thumb = image(render_thumbnail(instance, size=64))
    assert max(thumb.size) == 64
    with pytest.raises(RenderError):
        render_thumbnail(Series.objects.create(study=instance.series.study, series_uid="1.2.3.4.5"))


def test_viewer_metadata(ct_series):
    slices = series_slices(ct_series)
    positions = [s["image_position"][2] for s in slices]
    assert positions == sorted(positions) and len(positions) == 5
    meta = slices[0]
    assert meta["default_window"] == {"center": 40.0, "width": 400.0}
    assert meta["rescale"] == {"slope": 1.0, "intercept": -1024.0, "type": "HU"}
    assert meta["pixel_spacing"] == [5.625, 5.625]
    assert meta["frames"] == 1 and meta["rows"] == 64 and meta["columns"] == 64
    assert meta["slice_thickness"] == 5.0 and meta["slice_location"] == positions[0]
    assert meta["is_color"] is False and meta["sop_class_name"] == "CT Image Storage"


def test_viewer_metadata_falls_back_to_the_file(ct_series):
    instance = ct_series.instances.first()
    stored = viewer_metadata(instance)
    Instance.objects.filter(pk=instance.pk).update(meta={})
    instance.refresh_from_db()
    assert viewer_metadata(instance) == stored


# --- Big-endian palette colour -----------------------------------------------------------------


def pydicom_data_file(name: str) -> Path:
    """One of pydicom's larger test files, shipped by the pydicom-data package (a development
    requirement); never downloaded."""
    path = get_testdata_file(name, download=False)
    assert path, f"{name} is missing: install the development requirements (pydicom-data)"
    return Path(path)


def rendered(path: Path, frame: int = 0) -> np.ndarray:
    with open(path, "rb") as fh:
        return np.asarray(image(render.render(fh, frame=frame)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(
    ("little", "big", "frame"),
    [
        ("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm", 0),
        ("OBXXXX1A_2frame.dcm", "OBXXXX1A_expb_2frame.dcm", 0),
        ("OBXXXX1A_2frame.dcm", "OBXXXX1A_expb_2frame.dcm", 1),
    ],
)
def test_big_endian_palette_colour_renders_like_its_little_endian_twin(little, big, frame):
    """The same ultrasound in Explicit VR Little and Big Endian: 16-bit palette tables, which
    pydicom's apply_color_lut read byte-swapped from the big-endian file (almost black)."""
    expected, actual = rendered(pydicom_data_file(little), frame), rendered(pydicom_data_file(big), frame)
    assert actual.shape == expected.shape == (600, 800, 3)
    assert expected.mean() > 10  # a real picture, not the near-black one the bug produced
    assert np.abs(actual - expected).max() <= 1
    assert abs(actual.mean() - expected.mean()) < 0.05


def test_big_endian_palette_through_the_import_and_thumbnail(inputs):
    [instance] = imported(synth.with_identity(pydicom_data_file("OBXXXX1A_expb_2frame.dcm"), inputs / "us.dcm", "US1"))
    assert instance.transfer_syntax == "1.2.840.10008.1.2.2" and instance.frames == 2
    assert viewer_metadata(instance)["is_color"] is True
    with open(pydicom_data_file("OBXXXX1A_2frame.dcm"), "rb") as fh:
        twin = np.asarray(image(render.render(fh, frame=1)).convert("RGB"), dtype=np.int16)
    shown = np.asarray(image(render_frame(instance, frame=1)).convert("RGB"), dtype=np.int16)
    assert np.abs(shown - twin).max() <= 1
    thumb = np.asarray(image(render_thumbnail(instance, size=64)).convert("RGB"), dtype=np.int16)
    assert thumb.mean() > 10


# --- A codestream that claims more pixels than its header (docs/security.md §21) ---------------------

COMPRESSED = {"openjpeg": JPEG2000TransferSyntaxes, "libjpeg": JPEGTransferSyntaxes + JPEGLSTransferSyntaxes}


def first_frames() -> list[tuple[str, str, bytes, int, int]]:
    """(file, transfer syntax, first frame, rows, columns) of every bundled JPEG-family sample."""
    found = []
    with synth.warnings_suppressed():
        for path in sorted(p for p in SAMPLES.rglob("*.dcm") if p.is_file()):
            try:
                ds = pydicom.dcmread(path)
                ts = str(ds.file_meta.TransferSyntaxUID)
                if not any(ts in syntaxes for syntaxes in COMPRESSED.values()) or "PixelData" not in ds:
                    continue
                frame = next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
            except Exception:  # noqa: BLE001 - pydicom's deliberately broken samples
                continue
            found.append((path.name, ts, frame, int(ds.Rows), int(ds.Columns)))
    return found


def test_codestream_size_readers_agree_with_the_codecs_and_the_headers():
    """The size readers behind the guard, against pylibjpeg's codecs and the DICOM headers."""
    import libjpeg
    import openjpeg

    frames = first_frames()
    assert len(frames) >= 25
    checked = 0
    for name, ts, frame, rows, columns in frames:
        if ts in JPEG2000TransferSyntaxes:
            ours, codec = limits._j2k_size, openjpeg.get_parameters
        else:
            ours, codec = limits._jpeg_size, libjpeg.get_parameters
        try:
            params = codec(frame)
        except Exception:  # noqa: BLE001 - a damaged sample the codec cannot read either
            continue
        assert ours(frame) == (params["rows"], params["columns"]) == (rows, columns), name
        checked += 1
    assert checked >= 25


def claiming(source: Path, target: Path, rows: int, columns: int) -> Path:
    """``source`` with its first frame's codestream header claiming ``rows`` x ``columns``."""
    raw = source.read_bytes()
    with synth.warnings_suppressed():
        ds = pydicom.dcmread(source)
        frame = next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    changed = bytearray(frame)
    if ds.file_meta.TransferSyntaxUID in JPEG2000TransferSyntaxes:
        struct.pack_into(">II", changed, changed.index(b"\xff\x51") + 6, columns, rows)  # SIZ: Xsiz, Ysiz
    else:
        sof = min(i for i in (changed.find(m) for m in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7")) if i > 0)
        struct.pack_into(">HH", changed, sof + 5, rows, columns)  # SOF: lines, samples per line
    at = raw.index(frame[:64])
    target.write_bytes(raw[:at] + bytes(changed) + raw[at + len(frame) :])
    return target


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_a_codestream_claiming_more_pixels_than_its_header_is_refused_before_decoding(inputs, name):
    # 4096 x 4096 is cheap enough to decode if the guard were missing (the real attack claims
    # 60000 x 60000: 5.2 GB through the JPEG 2000 decoder, 13.8 GB through libjpeg's reader).
    path = claiming(SAMPLES / name, inputs / name, 4096, 4096)
    reason = render.decode_problem(path)
    assert reason == "The compressed image claims to be 4096 x 4096 pixels, larger than its DICOM header says; it was not decoded."
    [instance] = imported(synth.with_identity(path, inputs / "copy.dcm", patient_id="BOMB1"))
    assert instance.pixel_status == "undecodable" and instance.pixel_error == reason

"""The import's per-file shortcuts (issue 18, CPU per instance) decide what the full work decides:

- ``limits.plain_monochrome``: the first frame of plain uncompressed monochrome data is not
  decoded at import. Wherever it says "certain to decode", the decode check must agree, for
  every sample pydicom ships and for headers made to break the decoder.
- ``parse.parse_buffer`` turns pydicom's value validation off while parsing: the result must be
  the same as with it on, and the setting is restored (a process that asked for RAISE keeps it).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pydicom.config
import pytest

from imaging import storage
from imaging.dicom import limits, parse, render, synth
from imaging.models import PixelStatus
from imaging.services import staging
from tests.imaging.conftest import SAMPLES


def plain(data: bytes) -> bool:
    parsed, header = parse.parse_buffer(data)
    assert isinstance(parsed, parse.ParsedInstance) and parsed.is_image
    return parse.plain_monochrome(header, max_frame_pixels=render.MAX_RENDER_PIXELS)


def decode_problem(data: bytes) -> str | None:
    parsed, header = parse.parse_buffer(data)
    return render.header_decode_problem(header, parsed.viewer)


def ct(tmp_path: Path, name: str = "ct.dcm", **values) -> bytes:
    return synth.write_instance(tmp_path / name, rows=32, cols=32, values=values or None).read_bytes()


def parsed_images() -> list[tuple[str, bytes]]:
    """Every sample pydicom ships that the import's parse accepts as an image."""
    found = []
    for path in sorted(p for p in SAMPLES.rglob("*") if p.is_file()):
        data = path.read_bytes()
        try:
            parsed, _ = parse.parse_buffer(data)
        except parse.DicomRejected:
            continue
        if isinstance(parsed, parse.ParsedInstance) and parsed.is_image:
            found.append((str(path.relative_to(SAMPLES)), data))
    return found


def test_the_shortcut_is_taken_for_ct_and_mr_slices(tmp_path):
    assert plain(ct(tmp_path))
    assert plain(synth.bundled_file("CT_small.dcm").read_bytes())
    assert plain(synth.bundled_file("MR_small_implicit.dcm").read_bytes())
    # Not for compressed, big-endian, colour or palette data: those are decoded.
    for name in ("JPEG2000.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle.dcm", "examples_palette.dcm", "SC_rgb_jpeg.dcm"):
        data = synth.bundled_file(name).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        assert not limits.plain_monochrome(ds, limits.geometry(ds), max_frame_pixels=render.MAX_RENDER_PIXELS), name


def test_where_the_shortcut_says_decodable_the_decode_check_agrees_for_every_bundled_sample():
    samples = parsed_images()
    assert len(samples) > 40  # the test reads pydicom's samples, not an empty folder
    taken = 0
    for name, data in samples:
        if plain(data):
            taken += 1
            assert decode_problem(data) is None, name
    assert taken >= 5


@pytest.mark.parametrize("values", [
    {"BitsStored": 17}, {"BitsStored": 0}, {"PixelRepresentation": 2}, {"PhotometricInterpretation": "MONOCHROME3"},
    {"PhotometricInterpretation": "RGB"}, {"PhotometricInterpretation": "PALETTE COLOR"},
    {"PhotometricInterpretation": " MONOCHROME2"}, {"HighBit": 40}, {"NumberOfFrames": "0"},
    {"NumberOfFrames": "2"}, {"RescaleSlope": "1e30", "RescaleIntercept": "-1e30"}, {"WindowWidth": "0"},
    {"WindowCenter": "nan", "WindowWidth": "inf"}, {"VOILUTFunction": "SIGMOID"},
], ids=repr)
def test_headers_made_to_break_the_decoder_never_take_the_shortcut_wrongly(tmp_path, values):
    data = ct(tmp_path, **values)
    try:
        is_plain = plain(data)
    except parse.DicomRejected:
        return  # the parse refuses it: nothing is stored, nothing to decide
    if is_plain:
        assert decode_problem(data) is None
    else:
        # Decoded the long way, as before: whatever it finds is what the import records.
        decode_problem(data)


def test_a_lut_sequence_is_decoded_the_long_way(tmp_path):
    path = tmp_path / "lut.dcm"
    synth.write_instance(path, rows=32, cols=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        item = pydicom.Dataset()
        item.LUTDescriptor = [3, 0, 16]
        item.LUTData = b"\x00\x00\x01\x00"  # shorter than its descriptor says
        ds.ModalityLUTSequence = [item]
        ds.save_as(path)
    assert not plain(path.read_bytes())


def test_prepare_decodes_nothing_for_a_plain_slice_and_decodes_the_rest(tmp_path, dicom_storage, monkeypatch):
    decoded = []
    real = render.header_decode_problem

    def counting(header, viewer=None):
        decoded.append(header)
        return real(header, viewer)

    monkeypatch.setattr(render, "header_decode_problem", counting)
    good = synth.write_instance(tmp_path / "good.dcm", rows=32, cols=32)
    bad = synth.write_instance(tmp_path / "bad.dcm", rows=32, cols=32, values={"BitsStored": 17})
    with storage.IncomingRun() as run:
        first = staging.prepare(good, run)
        assert (first.pixel_status, first.pixel_error) == (PixelStatus.OK, "")
        assert decoded == []
        second = staging.prepare(bad, run)
    assert len(decoded) == 1
    assert second.pixel_status == PixelStatus.UNDECODABLE and second.pixel_error


def reference_parse(data: bytes):
    """parse_buffer as it was, pydicom's validation on (WARN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream = io.BytesIO(data)
        return parse._checked(parse._read(stream, stream, defer_size=None), len(data))


def outcome(fn, data: bytes):
    try:
        return fn(data)
    except parse.DicomRejected as exc:
        return exc.reason


def odd_values(tmp_path: Path) -> bytes:
    """A slice whose values pydicom's validation warns about (and cannot all write): written with
    placeholders of the same length, then the bytes replaced."""
    data = ct(tmp_path, InstanceNumber="98765",
              InstitutionName="PLACEHOLDER-INSTITUTION")
    for placeholder, odd in ((b"98765 ", b"1A2B3 "),
                             (b"PLACEHOLDER-INSTITUTION ", b"Lower case; {ok}\x00 <b>".ljust(24))):
        assert data.count(placeholder) == 1 and len(odd) == len(placeholder), placeholder
        data = data.replace(placeholder, odd)
    return data


def test_the_parse_returns_the_same_with_pydicoms_value_validation_off(tmp_path):
    odd = odd_values(tmp_path)
    files = [odd, *(data for _, data in parsed_images())]
    files += [p.read_bytes() for p in sorted(SAMPLES.rglob("*.dcm"))]  # rejections too
    for data in files:
        assert outcome(lambda d: parse.parse_buffer(d)[0], data) == outcome(reference_parse, data)
        assert pydicom.config.settings.reading_validation_mode == pydicom.config.WARN
    parsed = parse.parse_buffer(odd)[0]
    assert parsed.instance_number is None and parsed.institution == "Lower case; {ok} <b>"


def test_a_process_that_asked_pydicom_to_raise_keeps_it(tmp_path, monkeypatch):
    modes = []
    real = parse._checked

    def spy(ds, size):
        modes.append(pydicom.config.settings.reading_validation_mode)
        return real(ds, size)

    monkeypatch.setattr(parse, "_checked", spy)
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.RAISE)
    parse.parse_buffer(ct(tmp_path))
    assert modes == [pydicom.config.RAISE]
    assert pydicom.config.settings.reading_validation_mode == pydicom.config.RAISE
    monkeypatch.undo()
    monkeypatch.setattr(parse, "_checked", spy)
    parse.parse_buffer(ct(tmp_path, "again.dcm"))
    assert modes[-1] == pydicom.config.IGNORE
    assert pydicom.config.settings.reading_validation_mode == pydicom.config.WARN

"""Fuzzing the DICOM import with mutated real files (docs/security.md §16).

Seeds are real files: a spread of pydicom's bundled samples (explicit and implicit VR, big
endian, deflated, JPEG, JPEG 2000, JPEG-LS, RLE, nested and private sequences, a DICOMDIR) and
a small CT from the demo generator. Hypothesis mutates them the ways hostile or broken media
do: flipped, inserted and deleted bytes, truncation, corrupted tags, VRs and length fields
(zero, odd, undefined, huge), deeply nested sequences, a bogus transfer syntax, hostile header
values (NUL, path-like UIDs and IDs), and ZIP archives with evil member names, nested archives
and damaged central directories.

Every mutated input goes through the real importer (``imaging.services.ingest.dicom_import``), and each
imported instance through the viewer's renderer. Properties: the call returns (no exception
escapes, no crash); every file gets an outcome, and a rejection carries a reason; one stored
file and one Instance row per imported file, all inside the storage root; every kept UID is one
the lookups accept; the rendered frame is an image exactly when the import marked the pixels
decodable, else a ``RenderError`` with the reason stored at import; and nothing is written anywhere else: not next to the
inputs, not in the data directory, not in the working directory, and the import's temporary
directory is gone afterwards.

Failures once found are kept as ``@example`` regressions.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.conf import settings as django_settings
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imaging.dicom import synth
from imaging.dicom.parse import acceptable_uid
from imaging.errors import RenderError
from imaging.models import Instance, IntegrityAlert, PixelStatus
from imaging.services.ingest import dicom_import
from imaging.services.rendering import render_frame
from tests.hypothesis_profiles import NASTY, example_scope
from tests.imaging.conftest import listing
from tests.imaging.helpers import importer

pytestmark = pytest.mark.django_db

SEED_NAMES = [
    "CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm",
    "SC_rgb_jpeg.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle.dcm", "rtplan.dcm", "nested_priv_SQ.dcm",
    "dicomdirtests/DICOMDIR",
]
with synth.warnings_suppressed():
    SEEDS: dict[str, bytes] = {name: synth.bundled_file(name).read_bytes() for name in SEED_NAMES}
    _CT = synth.write_instance(Path(tempfile.mkdtemp(prefix="lightbox-fuzz-seed-")) / "ct.dcm", rows=8, cols=8)
    SEEDS["synth-ct.dcm"] = _CT.read_bytes()
    _CT.unlink()
    _CT.parent.rmdir()

# Values a length field can be made to lie with.
LENGTHS = [0, 1, 2, 3, 0xFFFF, 0xFFFE, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
# Tags worth colliding with: pixel data, item and delimiters, transfer syntax, a sequence.
TAGS = [(0x7FE0, 0x0010), (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD), (0x0002, 0x0010),
        (0x0008, 0x1115), (0x0004, 0x1220), (0x0000, 0x0000), (0xFFFF, 0xFFFF)]
VRS = [b"SQ", b"UN", b"OB", b"OW", b"UT", b"UI", b"US", b"FD", b"\x00\x00", b"zz"]
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.3", "../../etc", "", "1." + "9" * 80,
]
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def element_headers(data: bytes) -> list[tuple[int, int]]:
    """(offset of the tag, offset of the length field) of every explicit-VR-LE-looking element
    header in the file: enough to aim mutations at tags, VRs and lengths, even in files pydicom
    would read differently."""
    found = []
    for match in re.finditer(rb"(?s)(..)(..)([A-Z]{2})", data[132:]):
        vr = match.group(3)
        start = match.start() + 132
        found.append((start, start + 8 if vr in LONG_VRS else start + 6))
    return found[:400]


def nested_sequence(depth: int) -> bytes:
    """A sequence of undefined length, ``depth`` levels deep, each item holding the next."""
    seq = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    end_item = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    end_seq = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (seq + item) * depth + (end_item + end_seq) * depth


def with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """The file with its Transfer Syntax UID (0002,0010) replaced and the length rewritten."""
    at = data.find(b"\x02\x00\x10\x00UI", 132)
    if at < 0:
        return data
    (length,) = struct.unpack_from("<H", data, at + 6)
    value = uid.encode("latin-1", "replace")
    value += b"\x00" * (len(value) % 2)
    return data[: at + 6] + struct.pack("<H", len(value) & 0xFFFF) + value + data[at + 8 + length :]


def without(data: bytes, marker: bytes, count: int) -> bytes:
    """``data`` with ``count`` bytes deleted where ``marker`` starts (for regression examples)."""
    at = data.index(marker)
    return data[:at] + data[at + count :]


@st.composite
def mutation(draw, data: bytes) -> bytes:
    """One change to ``data``, of the kinds broken and hostile files show."""
    size = len(data)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "tag", "vr", "length", "nest", "syntax"]))
    at = draw(st.integers(0, max(size - 1, 0)))
    headers = element_headers(data)
    if kind in ("tag", "vr", "length") and not headers:
        kind = "flip"
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :] if size else data
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)) :]
    if kind == "nest":
        depth = draw(st.sampled_from([1, 2, 50, 400, 3000]))
        return data[:at] + nested_sequence(depth) + data[at:]
    if kind == "syntax":
        return with_transfer_syntax(data, draw(st.sampled_from(TRANSFER_SYNTAXES)))
    tag_at, length_at = draw(st.sampled_from(headers))
    if kind == "tag":
        return data[:tag_at] + struct.pack("<HH", *draw(st.sampled_from(TAGS))) + data[tag_at + 4 :]
    if kind == "vr":
        return data[: tag_at + 4] + draw(st.sampled_from(VRS)) + data[tag_at + 6 :]
    width = 4 if length_at == tag_at + 8 else 2
    value = draw(st.one_of(st.sampled_from(LENGTHS + [size, size + 1, size * 2]), st.integers(0, 2 ** (8 * width) - 1)))
    return data[:length_at] + (value & (2 ** (8 * width) - 1)).to_bytes(width, "little") + data[length_at + width :]


@st.composite
def mutated_file(draw) -> bytes:
    data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    for _ in range(draw(st.integers(1, 4))):
        data = draw(mutation(data))
    return data


@st.composite
def hostile_header(draw) -> bytes:
    """A valid file whose identifying values are hostile: the parser accepts the structure, so
    the values reach validation, the database and the storage names."""
    keyword = draw(st.sampled_from(["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
                                    "IssuerOfPatientID", "PatientName", "StudyDescription", "Modality",
                                    "NumberOfFrames", "Rows", "StudyDate", "InstitutionName"]))
    value = draw(st.sampled_from(NASTY + ["1.2.3\x00", "1.2.3/../../x", "..", "/etc/passwd", "C:\\evil", "65535"]))
    with synth.warnings_suppressed():
        ds = pydicom.dcmread(io.BytesIO(SEEDS["synth-ct.dcm"]))
        try:
            setattr(ds, keyword, value)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
        except Exception:  # noqa: BLE001 - pydicom would not write it; nor would a modality
            return SEEDS["synth-ct.dcm"]
    return out.getvalue()


EVIL_NAMES = ["../../fuzz-evil.dcm", "/tmp/fuzz-evil.dcm", "C:\\fuzz-evil.dcm", "..\\..\\fuzz-evil.dcm",
              "a/../../fuzz-evil.dcm", "DICOM/IM0001", "x" * 300, "\u202eevil.dcm", "dir/", "DICOMDIR", "IM\x01"]


@st.composite
def zip_archive(draw) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        warnings.simplefilter("ignore")  # duplicate member names are part of the hostile input
        for index in range(draw(st.integers(1, 4))):
            name = draw(st.one_of(st.sampled_from(EVIL_NAMES), st.text(min_size=1, max_size=30)))
            member = draw(st.one_of(mutated_file(), st.sampled_from(sorted(SEEDS)).map(SEEDS.get)))
            if draw(st.integers(0, 5)) == 0:  # an archive inside the archive
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as nested:
                    nested.writestr("inner/IM0001", member)
                member = inner.getvalue()
            archive.writestr(zipfile.ZipInfo(f"{index}-{name}" if draw(st.booleans()) else name), member)
    data = buffer.getvalue()
    return draw(mutation(data)) if draw(st.booleans()) else data


# --- The harness ---------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path, monkeypatch, dicom_storage):
    """Private temp and working directories, so "nothing written elsewhere" can be checked."""
    temp = tmp_path / "tmp"
    cwd = tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(cwd)
    return {"root": tmp_path, "storage": dicom_storage, "temp": temp, "cwd": cwd}


def snapshot(sandbox) -> dict[str, set[str]]:
    data_dir = Path(django_settings.DATA_DIR)
    return {
        "outside storage": {p for p in listing(sandbox["root"]) if not p.startswith(sandbox["storage"].name)},
        "data dir": listing(data_dir),
    }


def run_import(sandbox, files: dict[str, bytes]) -> None:
    """Import ``files`` (name -> bytes) from a fresh folder and check every property. Each
    example starts from an empty storage root and database (rolled back), so none depends on
    what an earlier one stored."""
    inputs = Path(tempfile.mkdtemp(dir=sandbox["root"], prefix="inputs-"))
    for name, data in files.items():
        (inputs / name).write_bytes(data)
    try:
        with example_scope():
            _import_and_check(sandbox, inputs)
    finally:
        shutil.rmtree(inputs)
        shutil.rmtree(sandbox["storage"], ignore_errors=True)


def _import_and_check(sandbox, inputs: Path) -> None:
    before = snapshot(sandbox)

    summary = dicom_import(actor=importer(), paths=[inputs])

    for outcome in summary.files:
        assert outcome.outcome in ("imported", "duplicate", "conflict", "rejected"), outcome
        if outcome.outcome in ("rejected", "conflict"):
            assert outcome.reason and outcome.reason.strip(), outcome
    rows = list(Instance.objects.all())
    assert len(rows) == summary.imported
    # Stored: each imported file, and each conflicting copy kept as evidence; by content address only.
    evidence = set(IntegrityAlert.objects.values_list("found_sha256", flat=True))
    assert len(evidence) <= summary.conflict
    stored = [p for p in sandbox["storage"].rglob("*") if p.is_file()] if sandbox["storage"].exists() else []
    for path in stored:
        assert re.fullmatch(r"dicom/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.dcm", str(path.relative_to(sandbox["storage"]))), path
    assert {p.name for p in stored} == {f"{sha}.dcm" for sha in {i.sha256 for i in rows} | evidence}
    for instance in rows:
        # Every UID kept is one the lookups accept (valid, or hash-like with a warning).
        assert all(acceptable_uid(uid) for uid in (instance.sop_uid, instance.series.series_uid, instance.series.study.study_uid))
        if not instance.rows:
            assert instance.pixel_status == PixelStatus.NONE
            continue
        # What the import found when it tried the first frame is what the viewer gets.
        if instance.pixel_status == PixelStatus.OK:
            assert render_frame(instance)[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert instance.pixel_status == PixelStatus.UNDECODABLE and 0 < len(instance.pixel_error) <= 300
            with pytest.raises(RenderError) as excinfo:
                render_frame(instance)
            assert excinfo.value.reason == instance.pixel_error
    after = snapshot(sandbox)
    assert after["data dir"] == before["data dir"], "the import wrote into the data directory"
    written = after["outside storage"] - before["outside storage"]
    assert not [p for p in written if not p.startswith("storage")], f"written outside storage: {written}"
    assert not os.listdir(sandbox["temp"]), f"left in temp: {os.listdir(sandbox['temp'])}"
    assert not os.listdir(sandbox["cwd"]), "written into the working directory"


FUZZ = settings(max_examples=settings.default.max_examples * 4)


@FUZZ
@given(data=mutated_file())
@example(data=SEEDS["CT_small.dcm"][:200] + nested_sequence(3000) + SEEDS["CT_small.dcm"][200:])
@example(data=with_transfer_syntax(SEEDS["CT_small.dcm"], "1.2.840.10008.1.2.1.99"))
@example(data=with_transfer_syntax(SEEDS["JPEG2000.dcm"], "1.2.840.10008.1.2.1"))
# Found by this fuzz: three bytes gone from a value shift every later element, and pydicom's lazy
# conversion of a misread group length raised BytesLengthException past the parser (a crash).
@example(data=without(SEEDS["rtplan.dcm"], b"150031", 3))
def test_mutated_files_are_imported_or_rejected_and_nothing_escapes(sandbox, data):
    run_import(sandbox, {"fuzzed.dcm": data})


@given(data=hostile_header())
def test_hostile_header_values_are_rejected_or_sanitised(sandbox, data):
    run_import(sandbox, {"IM0001": data})


@given(data=zip_archive())
def test_archives_with_evil_names_and_damage_never_write_by_their_names(sandbox, data):
    run_import(sandbox, {"cd.zip": data})
    for base in (sandbox["root"], sandbox["temp"], sandbox["cwd"], Path("/tmp")):
        assert not (base / "fuzz-evil.dcm").exists()

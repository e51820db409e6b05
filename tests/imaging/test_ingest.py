from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from audit.models import AccessEvent
from imaging import sources
from imaging.demo import build_demo_studies
from imaging.dicom import parse, synth
from imaging.dicom.render import MAX_REASON_CHARS
from imaging.errors import RenderError
from imaging.models import Instance, IntegrityAlert, Patient, PixelStatus, Series, Study
from imaging.services.ingest import ImportUsageError, dicom_import
from imaging.services.rendering import render_frame, render_thumbnail
from tests.factories import PatientFactory
from tests.imaging.conftest import SAMPLES, is_dicomdir, listing, sample_files
from tests.imaging.helpers import can_decode, importer, instances_check_pixels

pytestmark = pytest.mark.django_db

IDENTITY_REASONS = ("Missing Patient ID", "Missing Study Instance UID", "Missing Series Instance UID")


def assert_png(data: bytes, size: tuple[int, int] | None = None) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    if size is not None:
        assert image.size == size


# --- pydicom's bundled samples --------------------------------------------------------------


def test_every_bundled_sample_in_one_run():
    files = [p for p in sample_files() if not is_dicomdir(p)]
    summary = dicom_import(actor=importer(), paths=[SAMPLES])

    reported = {f.path for f in summary.files}
    assert reported == {str(p) for p in files}
    assert summary.imported + summary.duplicate + summary.conflict + summary.rejected == len(files)
    assert summary.imported >= 100
    assert all(f.reason for f in summary.files if f.outcome in ("rejected", "conflict"))
    # pydicom ships the same SOP Instance in several encodings: those are conflicts, not overwrites.
    assert summary.conflict > 0
    assert IntegrityAlert.objects.filter(kind="conflict").count() == summary.conflict
    # The DICOMDIR sets' files were imported once, not once per DICOMDIR.
    assert Instance.objects.filter(series__study__patient__mrn="77654033").count() == 7

    events = AccessEvent.objects.filter(action="ingest").count()
    again = dicom_import(actor=importer(), paths=[SAMPLES])
    assert again.imported == 0
    assert again.duplicate == summary.imported
    # Conflicting files are reported again (one event per affected study), new instances none.
    assert AccessEvent.objects.filter(action="ingest").count() - events == len(
        {f.study_uid for f in again.files if f.outcome == "conflict"}
    )
    assert IntegrityAlert.objects.filter(kind="conflict").count() == summary.conflict


@pytest.mark.parametrize(
    "path", [p for p in sample_files() if not is_dicomdir(p)], ids=lambda p: str(p.relative_to(SAMPLES))
)
def test_each_bundled_sample_imports_and_renders_or_is_rejected_with_reason(path, inputs):
    summary = dicom_import(actor=importer(), paths=[path])
    [result] = summary.files
    decodable = can_decode(str(path))

    if result.outcome == "rejected":
        assert result.reason
        if decodable:
            # Pixels pydicom can decode but no identity to file them under: with one, it imports.
            assert result.reason.startswith(IDENTITY_REASONS), result.reason
            copy = synth.with_identity(path, inputs / "copy.dcm", patient_id="SAMPLE1")
            [result] = dicom_import(actor=importer(), paths=[copy]).files
            assert result.outcome == "imported", result.reason
        else:
            return

    assert result.outcome == "imported", result.reason
    instance = Instance.objects.get(sop_uid=result.sop_uid)
    assert len(instance.sha256) == 64
    if not instance.is_image:
        assert instance.frames == 0 and instance.rows is None
        assert instance.meta["sop_class_name"]
        return
    if decodable:
        assert_png(render_frame(instance), (instance.columns, instance.rows))
    else:
        with pytest.raises(Exception) as excinfo:
            render_frame(instance)
        assert excinfo.value.reason


def test_non_image_objects_are_stored_with_their_class():
    summary = dicom_import(actor=importer(), paths=[SAMPLES / "rtplan.dcm", SAMPLES / "waveform_ecg.dcm"])
    assert summary.imported == 2
    plan = Instance.objects.get(sop_uid=summary.files[0].sop_uid)
    assert plan.frames == 0 and plan.rows is None and plan.columns is None
    assert plan.meta["sop_class_name"] == "RT Plan Storage"
    assert plan.series.modality == "RTPLAN"


# --- Crafted bad input ---------------------------------------------------------------------


def test_bad_files_are_rejected_with_reasons_and_nothing_is_written(inputs, dicom_storage, tmp_path):
    good = synth.write_instance(inputs / "good.dcm", patient_id="GOOD1")
    (inputs / "notes.txt").write_text("not an image\n" * 20)
    full = synth.write_instance(tmp_path / "src" / "full.dcm", rows=64, cols=64).read_bytes()
    (inputs / "truncated.dcm").write_bytes(full[: len(full) - 1000])
    (inputs / "cut-in-header.dcm").write_bytes(full[:140])
    synth.write_instance(inputs / "no-sop.dcm", delete=("SOPInstanceUID",))
    synth.write_instance(inputs / "no-patient.dcm", delete=("PatientID",))
    synth.write_instance(inputs / "path-uid.dcm", sop_uid="../../../../tmp/evil")
    synth.write_instance(inputs / "path-study.dcm", study_uid="1.2.3/../../etc/passwd")
    synth.write_instance(inputs / "long-uid.dcm", sop_uid="1." + "2" * 70)
    synth.write_instance(inputs / "absurd.dcm", values={"Rows": 65000, "Columns": 65000, "NumberOfFrames": "1000"})
    synth.write_instance(inputs / "exe.dcm", preamble=b"MZ\x90\x00\x03")
    synth.write_instance(inputs / "elf.dcm", preamble=b"\x7fELF\x02\x01\x01")
    def outside_storage() -> set[str]:
        return {p for p in listing(tmp_path) if not p.startswith(dicom_storage.name)}

    before_outside = outside_storage()

    summary = dicom_import(actor=importer(), paths=[inputs])

    outcomes = {Path(f.path).name: f for f in summary.files}
    assert outcomes["good.dcm"].outcome == "imported"
    expected = {
        "notes.txt": "Not a DICOM file",
        "truncated.dcm": "truncated",
        "cut-in-header.dcm": "",
        "no-sop.dcm": "Missing SOP Instance UID",
        "no-patient.dcm": "Missing Patient ID",
        "path-uid.dcm": "Invalid SOP Instance UID",
        "path-study.dcm": "Invalid Study Instance UID",
        "long-uid.dcm": "Invalid SOP Instance UID",
        "absurd.dcm": "Absurd image size",
        "exe.dcm": "executable",
        "elf.dcm": "executable",
    }
    for name, fragment in expected.items():
        assert outcomes[name].outcome == "rejected", name
        assert outcomes[name].reason and fragment in outcomes[name].reason, (name, outcomes[name].reason)
    # Only the good file reached storage, under its content address; nothing appeared elsewhere.
    stored = [p for p in dicom_storage.rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [f"{Instance.objects.get().sha256}.dcm"]
    assert outside_storage() == before_outside
    assert not Path("/tmp/evil").exists()
    assert good.exists()


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(ImportUsageError):
        dicom_import(actor=importer(), paths=[tmp_path / "nope"])


# --- Archives and media --------------------------------------------------------------------


def test_zip_with_nested_folders_zip_slip_and_bomb(inputs, tmp_path, dicom_storage):
    one = synth.write_instance(tmp_path / "src" / "1.dcm", patient_id="ZIP1").read_bytes()
    two = synth.write_instance(tmp_path / "src" / "2.dcm", patient_id="ZIP1").read_bytes()
    evil = synth.write_instance(tmp_path / "src" / "3.dcm", patient_id="ZIP1").read_bytes()
    archive = inputs / "cd.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EXAM/SERIES1/IM0001", one)
        zf.writestr("EXAM/SERIES2/deeper/IM0002.dcm", two)
        zf.writestr("../../zip-slip-evil.dcm", evil)
        zf.writestr("/abs/evil.dcm", evil)
        zf.writestr("EXAM/readme.txt", "hello")
        zf.writestr("bomb.dcm", b"\0" * (40 * 1024 * 1024))

    summary = dicom_import(actor=importer(), paths=[archive])

    by_member = {f.path.split("!", 1)[1]: f for f in summary.files}
    assert by_member["EXAM/SERIES1/IM0001"].outcome == "imported"
    assert by_member["EXAM/SERIES2/deeper/IM0002.dcm"].outcome == "imported"
    assert "Unsafe archive member" in by_member["../../zip-slip-evil.dcm"].reason
    assert "Unsafe archive member" in by_member["/abs/evil.dcm"].reason
    assert by_member["EXAM/readme.txt"].outcome == "rejected"
    assert "zip bomb" in by_member["bomb.dcm"].reason
    assert all(f.path.startswith(str(archive) + "!") for f in summary.files)
    # Nothing was written by member name, anywhere.
    for base in (inputs, tmp_path, Path(tempfile.gettempdir()), Path(tempfile.gettempdir()).parent):
        assert not (base / "zip-slip-evil.dcm").exists()
    assert {p.suffix for p in dicom_storage.rglob("*") if p.is_file()} == {".dcm"}
    assert Instance.objects.count() == 2


def test_broken_zip_is_rejected(inputs):
    (inputs / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    [result] = dicom_import(actor=importer(), paths=[inputs / "broken.zip"]).files
    assert result.outcome == "rejected" and result.reason


def test_dicomdir_media(tmp_path):
    media = tmp_path / "cdrom"
    shutil.copytree(SAMPLES / "dicomdirtests", media)
    (media / "77654033" / "CR1" / "6154").unlink()  # a damaged disc
    (media / "77654033" / "CR2").rename(media / "77654033" / "cr2")  # a lower-casing mount

    summary = dicom_import(actor=importer(), paths=[media / "DICOMDIR"])

    missing = [f for f in summary.files if f.outcome == "rejected"]
    assert len(missing) == 1 and "missing" in missing[0].reason
    assert missing[0].path.endswith("6154")
    assert summary.imported == 30
    assert Instance.objects.filter(series__study__patient__mrn="77654033").count() == 6


def test_dicomdir_references_never_leave_the_media(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "secret.dcm").write_bytes(b"x")
    candidate = sources.Candidate(str(media / "DICOMDIR"), media / "DICOMDIR")
    refs = [("..", "secret.dcm"), ("/etc", "passwd"), ("A:", "B")]
    results = list(sources.resolve_dicomdir(candidate, refs))
    assert all(isinstance(r, sources.Refused) and "Unsafe" in r.reason for r in results)


# --- Duplicates, conflicts, patients, audit --------------------------------------------------


def test_duplicate_and_conflict(inputs, tmp_path):
    uids = {"study_uid": "1.2.826.0.1.99.1", "series_uid": "1.2.826.0.1.99.2", "sop_uid": "1.2.826.0.1.99.3"}
    original = synth.write_instance(inputs / "original.dcm", seed=1, **uids)
    altered = synth.write_instance(tmp_path / "other" / "altered.dcm", seed=2, **uids)

    assert dicom_import(actor=importer(), paths=[original]).files[0].outcome == "imported"
    instance = Instance.objects.get()
    assert dicom_import(actor=importer(), paths=[original]).files[0].outcome == "duplicate"

    [conflict] = dicom_import(actor=importer(), paths=[altered]).files
    assert conflict.outcome == "conflict" and "already stored" in conflict.reason
    [alert] = IntegrityAlert.objects.all()
    assert alert.kind == "conflict" and alert.instance == instance
    assert alert.expected_sha256 == instance.sha256 and alert.found_sha256 != instance.sha256
    sha = instance.sha256
    instance.refresh_from_db()
    assert instance.sha256 == sha
    assert dicom_import(actor=importer(), paths=[altered]).files[0].outcome == "conflict"
    assert IntegrityAlert.objects.count() == 1  # the same finding is not raised twice
    assert Instance.objects.count() == 1


def test_original_bytes_survive_a_conflict(inputs, tmp_path, dicom_storage):
    uids = {"study_uid": "1.2.826.0.1.98.1", "series_uid": "1.2.826.0.1.98.2", "sop_uid": "1.2.826.0.1.98.3"}
    original = synth.write_instance(inputs / "original.dcm", seed=1, **uids)
    altered = synth.write_instance(tmp_path / "other" / "altered.dcm", seed=2, **uids)
    dicom_import(actor=importer(), paths=[original])
    instance = Instance.objects.get()
    dicom_import(actor=importer(), paths=[altered])
    instance.refresh_from_db()
    assert (dicom_storage / instance.storage_path).read_bytes() == original.read_bytes()


def test_patient_matching_by_issuer_and_id(inputs):
    existing = PatientFactory(issuer="STEXAMPLE", mrn="MRN42")
    synth.write_instance(inputs / "a" / "1.dcm", patient_id="MRN42")
    synth.write_instance(inputs / "b" / "1.dcm", patient_id="MRN43", issuer="OTHERHOSP")
    synth.write_instance(inputs / "c" / "1.dcm", patient_id="MRN44")

    dicom_import(actor=importer(), paths=[inputs / "a"], issuer="STEXAMPLE")
    dicom_import(actor=importer(), paths=[inputs / "b"])
    dicom_import(actor=importer(), paths=[inputs / "c"])

    assert Study.objects.get(patient__mrn="MRN42").patient == existing
    assert existing.name != "Patient Test"  # the hospital's record is not renamed by a file
    other = Patient.objects.get(mrn="MRN43")
    assert other.issuer == "OTHERHOSP" and other.name == "Patient Test"
    assert other.birth_date == dt.date(1970, 1, 1)
    assert Patient.objects.get(mrn="MRN44").issuer == "LOCAL"


def test_study_belonging_to_another_patient_is_not_merged(inputs):
    synth.write_instance(inputs / "a.dcm", patient_id="P1", study_uid="1.2.826.0.1.97.1")
    synth.write_instance(inputs / "b" / "b.dcm", patient_id="P2", study_uid="1.2.826.0.1.97.1")
    dicom_import(actor=importer(), paths=[inputs / "a.dcm"])
    [result] = dicom_import(actor=importer(), paths=[inputs / "b"]).files
    assert result.outcome == "rejected" and "another patient" in result.reason


def test_one_access_event_per_study_per_run(inputs):
    identity = synth.Identity("Rivera", "Sam", "AUD1", "STEXAMPLE", dt.date(1990, 5, 6))
    study = synth.StudyHeader(description="CT HEAD", date=dt.date(2025, 2, 3), time=dt.time(9, 0),
                              institution="St. Example Hospital", referring_physician="Lee^Ann",
                              accession="ACC1", modality="CT")
    synth.write_ct_series(inputs / "ct", identity, study, slices=3, size=32)
    second = "1.2.826.0.1.96.1"
    for n in range(2):
        synth.write_instance(inputs / "sc" / f"{n}.dcm", patient_id="AUD1", issuer="STEXAMPLE", study_uid=second)

    summary = dicom_import(actor=importer(), paths=[inputs])
    assert summary.imported == 5

    events = AccessEvent.objects.filter(action="ingest").order_by("pk")
    assert [e.details for e in events] == [{"instances": 3}, {"instances": 2}]
    for event in events:
        assert (event.actor_type, event.purpose, event.source, event.outcome) == ("system", "operations", "import", "success")
        assert event.patient.mrn == "AUD1" and event.study is not None
    ct = Study.objects.get(study_uid=study.uid)
    assert (ct.description, ct.institution, ct.modalities, ct.accession) == ("CT HEAD", "St. Example Hospital", "CT", "ACC1")
    assert ct.referring_physician == "Ann Lee"

    dicom_import(actor=importer(), paths=[inputs])  # all duplicates: nothing new happened to the patient's data
    assert AccessEvent.objects.filter(action="ingest").count() == 2


# --- Hash-like UIDs ----------------------------------------------------------------------------

HEX_SOP = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"  # a SHA-256, as anonymisers write
HEX_STUDY = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
UUID_SERIES = "123e4567-e89b-12d3-a456-426614174000"


def test_hash_like_uids_are_imported_with_a_warning(inputs):
    path = synth.write_instance(inputs / "anon.dcm", patient_id="ANON1", sop_uid=HEX_SOP, study_uid=HEX_STUDY,
                                series_uid=UUID_SERIES)

    [result] = dicom_import(actor=importer(), paths=[path]).files

    assert result.outcome == "imported", result.reason
    assert (result.sop_uid, result.study_uid) == (HEX_SOP, HEX_STUDY)
    assert len(result.warnings) == 3
    for label in ("SOP Instance UID", "Study Instance UID", "Series Instance UID"):
        assert any(label in w and "not a standard DICOM UID" in w for w in result.warnings), (label, result.warnings)
    instance = Instance.objects.get(sop_uid=HEX_SOP)
    assert instance.series.series_uid == UUID_SERIES and instance.series.study.study_uid == HEX_STUDY
    assert instance.pixel_status == PixelStatus.OK
    assert_png(render_frame(instance))
    # The same file again is a duplicate, and still says what is unusual about it.
    [again] = dicom_import(actor=importer(), paths=[path]).files
    assert again.outcome == "duplicate" and len(again.warnings) == 3


def test_hash_like_uid_in_the_json_report(inputs):
    synth.write_instance(inputs / "anon.dcm", sop_uid=HEX_SOP)
    synth.write_instance(inputs / "plain.dcm")
    out = io.StringIO()
    call_command("import_dicom", str(inputs), "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert (data["imported"], data["rejected"], data["warnings"]) == (2, 0, 1)
    entries = {Path(e["path"]).name: e for e in data["files"]}
    assert entries["anon.dcm"]["sop_uid"] == HEX_SOP
    [warning] = entries["anon.dcm"]["warnings"]
    assert "SOP Instance UID" in warning
    assert entries["plain.dcm"]["warnings"] == []


@pytest.mark.parametrize(
    "uid",
    ["../x", "a/b", "..", "a..b", ".a", "a.", "C:\\x", "a b", "a\tb", "<script>", "1.2;3", "x" * 65, "1." + "2" * 63],
)
def test_path_like_and_hostile_uids_are_still_rejected(inputs, dicom_storage, uid):
    path = synth.write_instance(inputs / "evil.dcm", sop_uid=uid)
    [result] = dicom_import(actor=importer(), paths=[path]).files
    assert result.outcome == "rejected" and result.reason.startswith("Invalid SOP Instance UID"), (uid, result.reason)
    assert not parse.acceptable_uid(uid)
    assert not dicom_storage.exists() or not any(p.is_file() for p in dicom_storage.rglob("*"))


def test_uid_rules():
    assert parse.valid_uid("1.2.840.10008.1.2") and parse.acceptable_uid("1.2.840.10008.1.2")
    assert parse.acceptable_uid(HEX_SOP) and not parse.valid_uid(HEX_SOP)
    assert parse.acceptable_uid(UUID_SERIES) and not parse.valid_uid(UUID_SERIES)
    for bad in ("", "1.2.3\n", "1.2\x003", "a" * 65, "1..2", "a/b", "\u0661\u0662"):
        assert not parse.acceptable_uid(bad), repr(bad)


# --- Pixels that cannot be decoded -------------------------------------------------------------


def corrupted_jpeg2000(target: Path) -> Path:
    """pydicom's JPEG2000.dcm with the first 16 bytes of its codestream zeroed: the file is whole
    and parses, but no JPEG 2000 decoder can read the image."""
    import pydicom
    from pydicom.encaps import generate_frames

    raw = (SAMPLES / "JPEG2000.dcm").read_bytes()
    with synth.warnings_suppressed():
        frame = next(generate_frames(pydicom.dcmread(SAMPLES / "JPEG2000.dcm").PixelData, number_of_frames=1))
    at = raw.index(frame[:64])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(raw[:at] + bytes(16) + raw[at + 16 :])
    return target


def without_decoder(source: Path, target: Path, **uids: str) -> Path:
    """``source`` re-labelled as JPEG 2000 Part 2 multi-component, which pydicom knows by name
    but no installed plugin decodes (the pixels are encapsulated as that syntax requires)."""
    import pydicom
    from pydicom.encaps import encapsulate

    with synth.warnings_suppressed():
        ds = pydicom.dcmread(source)
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"
        for keyword, value in uids.items():
            setattr(ds, keyword, value)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
    return target


def assert_plain_reason(reason: str) -> None:
    assert 20 < len(reason) <= MAX_REASON_CHARS, reason
    assert reason[0].isupper() and reason.endswith("."), reason
    assert "\n" not in reason and "Traceback" not in reason and " at 0x" not in reason, reason


def test_undecodable_pixels_are_stored_marked_and_explained(inputs, dicom_storage):
    damaged = corrupted_jpeg2000(inputs / "damaged.dcm")
    unsupported = without_decoder(synth.write_instance(inputs / "src" / "ct.dcm", patient_id="PX1"), inputs / "part2.dcm")
    good = synth.write_instance(inputs / "good.dcm", patient_id="PX1")
    document = SAMPLES / "rtplan.dcm"
    assert not can_decode(str(damaged)) and not can_decode(str(unsupported)) and can_decode(str(good))

    summary = dicom_import(actor=importer(), paths=[damaged, unsupported, good, document])

    outcomes = {Path(f.path).name: f for f in summary.files}
    assert {name: f.outcome for name, f in outcomes.items()} == dict.fromkeys(outcomes, "imported")
    assert summary.warnings == 2
    assert outcomes["good.dcm"].warnings == [] and outcomes["rtplan.dcm"].warnings == []

    broken = Instance.objects.get(sop_uid=outcomes["damaged.dcm"].sop_uid)
    assert broken.pixel_status == PixelStatus.UNDECODABLE
    assert_plain_reason(broken.pixel_error)
    assert "JPEG 2000" in broken.pixel_error and "damaged" in broken.pixel_error
    no_codec = Instance.objects.get(sop_uid=outcomes["part2.dcm"].sop_uid)
    assert no_codec.pixel_status == PixelStatus.UNDECODABLE
    assert no_codec.pixel_error == (
        "The image is compressed with JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only), "
        "which this server cannot decode."
    )
    assert Instance.objects.get(sop_uid=outcomes["good.dcm"].sop_uid).pixel_status == PixelStatus.OK
    assert Instance.objects.get(sop_uid=outcomes["rtplan.dcm"].sop_uid).pixel_status == PixelStatus.NONE

    # Stored as received: it is still the patient's record.
    for instance in (broken, no_codec):
        assert (dicom_storage / instance.storage_path).read_bytes() in (damaged.read_bytes(), unsupported.read_bytes())
        [warning] = outcomes["damaged.dcm" if instance == broken else "part2.dcm"].warnings
        assert warning.endswith(instance.pixel_error) and "cannot be shown" in warning
        # The renderer answers with the reason found at ingest, whole.
        with pytest.raises(RenderError) as excinfo:
            render_frame(instance)
        assert excinfo.value.reason == instance.pixel_error
        with pytest.raises(RenderError) as excinfo:
            render_thumbnail(instance.series)
        assert excinfo.value.reason == instance.pixel_error

    # Re-importing the same bytes does not decode again, and reports the same warning.
    [again] = dicom_import(actor=importer(), paths=[damaged]).files
    assert again.outcome == "duplicate" and again.warnings == outcomes["damaged.dcm"].warnings


def test_thumbnail_skips_images_that_cannot_be_shown(inputs):
    uids = {"StudyInstanceUID": "1.2.826.0.1.95.1", "SeriesInstanceUID": "1.2.826.0.1.95.2"}
    paths = [synth.write_instance(inputs / f"{n}.dcm", patient_id="PX2", study_uid=uids["StudyInstanceUID"],
                                  series_uid=uids["SeriesInstanceUID"], values={"InstanceNumber": n}, seed=n)
             for n in (1, 2, 3)]
    middle = without_decoder(paths[1], inputs / "x" / "2.dcm")
    paths[1].unlink()
    summary = dicom_import(actor=importer(), paths=[paths[0], middle, paths[2]])
    assert summary.imported == 3 and summary.warnings == 1
    series = Series.objects.get(series_uid=uids["SeriesInstanceUID"])
    assert_png(render_thumbnail(series))


def test_rows_imported_before_the_pixel_check_are_marked_once(inputs):
    damaged = corrupted_jpeg2000(inputs / "damaged.dcm")
    good = synth.write_instance(inputs / "good.dcm", patient_id="8NM1")
    summary = dicom_import(actor=importer(), paths=[damaged, good, SAMPLES / "rtplan.dcm"])
    assert summary.imported == 3
    Instance.objects.update(pixel_status=PixelStatus.OK, pixel_error="")  # as migration 0005 left older rows

    assert instances_check_pixels() == 1
    statuses = {Path(f.path).name: Instance.objects.get(sop_uid=f.sop_uid) for f in summary.files}
    assert statuses["damaged.dcm"].pixel_status == PixelStatus.UNDECODABLE
    assert_plain_reason(statuses["damaged.dcm"].pixel_error)
    assert statuses["good.dcm"].pixel_status == PixelStatus.OK
    assert statuses["rtplan.dcm"].pixel_status == PixelStatus.NONE
    assert instances_check_pixels() == 0  # idempotent: marked rows are not checked again


def test_command_lists_warnings(inputs):
    corrupted_jpeg2000(inputs / "damaged.dcm")
    out = io.StringIO()
    call_command("import_dicom", str(inputs), stdout=out)
    text = out.getvalue()
    assert "Imported 1, duplicate 0, conflict 0, rejected 0." in text
    assert "1 file(s) with warnings." in text
    assert "damaged.dcm: Stored, but its image cannot be shown: The image data (JPEG 2000" in text


# --- Command ---------------------------------------------------------------------------------


def test_command_json_contract(inputs):
    synth.write_instance(inputs / "ok.dcm")
    (inputs / "bad.dcm").write_bytes(b"garbage")
    out = io.StringIO()
    call_command("import_dicom", str(inputs), "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"imported", "duplicate", "conflict", "rejected", "warnings", "files"}
    assert (data["imported"], data["duplicate"], data["conflict"], data["rejected"], data["warnings"]) == (1, 0, 0, 1, 0)
    for entry in data["files"]:
        assert {"path", "outcome", "warnings"} <= set(entry) <= {"path", "outcome", "reason", "sop_uid", "study_uid", "warnings"}
        assert entry["warnings"] == []
    [bad] = [e for e in data["files"] if e["outcome"] == "rejected"]
    assert bad["path"].endswith("bad.dcm") and bad["reason"]
    [ok] = [e for e in data["files"] if e["outcome"] == "imported"]
    assert ok["sop_uid"] and ok["study_uid"]


def test_command_human_output_and_usage_error(inputs, tmp_path):
    synth.write_instance(inputs / "ok.dcm")
    (inputs / "bad.dcm").write_bytes(b"garbage")
    out = io.StringIO()
    call_command("import_dicom", str(inputs), "--issuer", "STEXAMPLE", stdout=out)
    text = out.getvalue()
    assert "Imported 1, duplicate 0, conflict 0, rejected 1." in text
    assert "bad.dcm" in text
    assert Patient.objects.get().issuer == "STEXAMPLE"
    with pytest.raises(CommandError):
        call_command("import_dicom", str(tmp_path / "missing"), stdout=io.StringIO())


# --- Demo --------------------------------------------------------------------------------------


def test_demo_studies_look_like_a_real_record():
    patient = PatientFactory(name="Alex Morgan", issuer="STEXAMPLE", mrn="DEMO0001")
    studies = build_demo_studies(patient)

    # The CT comes with its report: a Structured Report and its PDF copy (issue 19 item 15).
    assert [s.modalities for s in studies] == ["CT,DOC,SR", "MR", "DX", "US"]
    today = timezone.localdate()
    assert all(today - dt.timedelta(days=731) <= s.study_date <= today for s in studies)
    assert all(s.patient == patient and s.description and s.institution and s.referring_physician for s in studies)
    ct = studies[0].series.get(modality="CT")
    assert ct.instances.count() == 40
    slice_meta = ct.instances.first().meta
    assert slice_meta["rescale_intercept"] == -1024.0 and slice_meta["pixel_spacing"]
    assert Patient.objects.count() == 1
    assert AccessEvent.objects.filter(action="ingest", patient=patient).count() == 4
    for study in studies:
        for series in study.series.exclude(modality__in=["SR", "DOC"]):
            assert_png(render_thumbnail(series))

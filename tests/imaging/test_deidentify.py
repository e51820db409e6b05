"""De-identified copies (imaging/dicom/deidentify.py): every row of PS3.15 Table E.1-1 handled as
its action says, at every nesting level, over a dataset generated from the table and over every
file pydicom ships; declarations, neutral values, keyed UIDs and masked pixels."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from imaging.dicom import deidentify, ps315, synth
from imaging.dicom.deidentify import PATIENT_COPY_OPTIONS, Deidentifier
from tests.imaging.conftest import sample_files

SEED = "a test archive's seed"
NAME = "SMITH^JANE^MARIE"
# The compound codes' resolution the module documents: keep the file valid, say the least.
RESOLVED = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "UR", "AE", "CS"}
BYTES_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
META_ALLOWED = {"FileMetaInformationGroupLength", "FileMetaInformationVersion", "MediaStorageSOPClassUID",
                "MediaStorageSOPInstanceUID", "TransferSyntaxUID", "ImplementationClassUID", "ImplementationVersionName"}
# An identifying public sequence the table does not list, to hold the whole table one level down.
CONTAINER = "SharedFunctionalGroupsSequence"


# --- building datasets -----------------------------------------------------------------------


def vr_of(tag: int) -> str:
    """The tag's VR from pydicom's dictionary (the first of an ambiguous pair); UN for the
    2026c rows pydicom does not know yet."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def value_for(vr: str, tag: int) -> Any:
    """A distinctive non-empty value of the VR (each tag's own, so a copy cannot match by chance)."""
    text = f"T{tag:08X}"
    return {
        "PN": NAME, "AS": "042Y", "DA": "20200315", "DT": "20200315101530.25+0100", "TM": "101530",
        "UI": f"1.2.826.0.1.3680043.10.999.{tag}", "IS": "7", "DS": "7.5", "US": 7, "SS": 7, "UL": 7, "SL": 7,
        "SV": 7, "UV": 7, "FL": 7.5, "FD": 7.5, "AT": 0x00100010, "UR": f"http://example.org/{text}",
    }.get(vr, text if vr in TEXT_VRS else b"\x07" * 8)


def sequence_item() -> Dataset:
    """What a sequence of the table holds here: a listed name (D), a listed UID (U) and free
    text the table does not list."""
    item = Dataset()
    item.PersonName = NAME
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    item.TextValue = "seen by Dr Who"
    return item


# Rows that cannot be built into a data set: the command set's (pydicom refuses to write group
# 0000 into a file) and the file meta's (checked in the meta group, where it lives).
SKIPPED = {"AffectedSOPInstanceUID", "RequestedSOPInstanceUID", "MediaStorageSOPInstanceUID"}


def table_rows() -> list[ps315.Rule]:
    """Every exact row of the table but SKIPPED."""
    return [r for r in ps315.table().rules if r.mask == 0xFFFFFFFF and r.tag >> 16 not in (0x0000, 0x0002)]


def fill(ds: Dataset) -> None:
    for rule in table_rows():
        vr = vr_of(rule.tag)
        value = Sequence([sequence_item()]) if vr == "SQ" else value_for(vr, rule.tag)
        ds.add(DataElement(rule.tag, vr, value))


def add_curves_overlays_private(ds: Dataset) -> None:
    for group in (0x6000, 0x6002):
        ds.add_new((group << 16) | 0x0010, "US", 4)
        ds.add_new((group << 16) | 0x0011, "US", 4)
        ds.add_new((group << 16) | 0x0022, "LO", "overlay of JANE SMITH")
        ds.add_new((group << 16) | 0x1500, "LO", "JS label")
        ds.add_new((group << 16) | 0x3000, "OW", b"\xff\xff")
        ds.add_new((group << 16) | 0x4000, "LT", "comment about Jane")
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50000022, "LO", "curve of JANE SMITH")
    ds.add_new(0x50003000, "OB", b"\x01\x02")
    private = Dataset()
    private.PatientName = NAME
    private.add_new(0x00111001, "LO", NAME)
    ds.add_new(0x00090010, "LO", "LIGHTBOX TEST")
    ds.add_new(0x00091001, "SQ", Sequence([private]))
    ds.add_new(0x00091002, "LO", NAME)


def part10(ds: Dataset, **meta: str) -> io.BytesIO:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword, value in meta.items():
        setattr(ds.file_meta, keyword, value)
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values crafted for their VR, not for any IOD
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    out.seek(0)
    return out


def the_whole_table() -> Dataset:
    ds = Dataset()
    fill(ds)
    inner = Dataset()
    fill(inner)
    add_curves_overlays_private(inner)
    ds.add(DataElement(tag_for_keyword(CONTAINER), "SQ", Sequence([inner])))
    add_curves_overlays_private(ds)
    ds.SOPClassUID = SecondaryCaptureImageStorage  # SOPInstanceUID is a row of the table: filled above
    return ds


def read(result: deidentify.DeidentifiedFile) -> pydicom.FileDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(result.file)
        for element in ds.iterall():
            _ = element.value
    return ds


def walk(ds: Dataset, depth: int = 0):
    """(element, depth) for every element at every nesting level."""
    for element in ds:
        yield element, depth
        if element.VR == "SQ":
            for item in element.value:
                yield from walk(item, depth + 1)


def shifted(value: str, days: dt.timedelta) -> str:
    return (dt.datetime.strptime(value[:8], "%Y%m%d") - days).strftime("%Y%m%d")


def codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


# --- 1. the table, row by row ------------------------------------------------------------------


def check_row(rule: ps315.Rule, out: Dataset, deidentifier: Deidentifier, *, strict: bool) -> str | None:
    """What is wrong with how one row was handled in ``out``, or None."""
    vr = vr_of(rule.tag)
    original = value_for(vr, rule.tag)
    action = rule.action(PATIENT_COPY_OPTIONS)
    if action == "C":
        if vr in ("DA", "DT"):
            want = shifted(original, deidentifier.shift) + (original[8:].split("+")[0] if vr == "DT" else "")
            return None if out.get(rule.tag) is not None and out[rule.tag].value == want else f"not shifted to {want}"
        action = rule.basic  # C means nothing for this VR (times included): the Basic Profile applies
    action = RESOLVED.get(action, action)
    element = out.get(rule.tag)
    if action == "X":
        return None if element is None else "not removed"
    if element is None:
        return f"{action} but removed"
    value = element.value
    if action == "Z":
        return None if (len(value) == 0 if vr == "SQ" else value in ("", None, b"")) else f"not empty: {value!r}"
    if action == "K":
        return None if value == original else "not kept"
    if vr == "SQ":
        if len(value) != 1:
            return f"{len(value)} items"
        item = value[0]
        if item.PersonName != "ANONYMOUS" or item.ReferencedSOPInstanceUID != deidentifier.uid("1.2.826.0.1.3680043.10.999.1"):
            return "item not de-identified"
        # D replaces the content: free text the table does not list goes too; U keeps it.
        want_text = "ANONYMIZED" if action == "D" or strict else "seen by Dr Who"
        return None if item.TextValue == want_text else f"item text {item.TextValue!r}"
    if action == "U":
        return None if value == deidentifier.uid(original) and value.startswith("2.25.") else f"UID {value!r}"
    # D: a neutral value of the VR, never the original.
    neutral = {"PN": "ANONYMOUS", "AS": "000D", "TM": "000000", "IS": 0, "DS": 0, "US": 0, "SS": 0, "UL": 0, "SL": 0,
               "SV": 0, "UV": 0, "FL": 0, "FD": 0}
    if vr in TEXT_VRS:
        ok = value == "ANONYMIZED"
    elif vr in BYTES_VRS:
        ok = value == bytes(len(original))
    elif vr == "UI":
        ok = value == deidentifier.uid(original)
    elif vr in ("DA", "DT"):
        ok = str(value).startswith(shifted(original, deidentifier.shift))
    else:
        ok = vr in neutral and value == neutral[vr]
    return None if ok and value != original else f"D gave {value!r}"


def test_every_table_attribute_is_handled_as_its_action_says():
    deidentifier = Deidentifier(SEED)
    result = deidentifier.deidentify(part10(the_whole_table(), SourceApplicationEntityTitle="CT_SCANNER_7"))
    out = read(result)
    inner = out[CONTAINER][0]
    rows = table_rows()
    exact = [r for r in ps315.table().rules if r.mask == 0xFFFFFFFF]
    assert {r.keyword for r in exact} - {r.keyword for r in rows} == SKIPPED
    assert len(rows) == len(exact) - len(SKIPPED)  # the whole table, including the rows pydicom's dictionary does not know (as UN)
    wrong = []
    for rule in rows:
        for where, container in (("top", out), ("nested", inner)):
            problem = check_row(rule, container, deidentifier, strict=False)
            if problem:
                wrong.append(f"{where} {rule.tag_text} {rule.keyword or rule.name} ({rule.basic}): {problem}")
    assert wrong == []
    # The file meta's row, and its consistency with the dataset.
    sop_uid = value_for("UI", tag_for_keyword("SOPInstanceUID"))
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID == result.sop_uid == deidentifier.uid(sop_uid)
    assert result.original_sop_uid == sop_uid
    assert {e.keyword for e in out.file_meta} <= META_ALLOWED
    # Curves, overlays and private attributes, with everything inside them, at every level.
    for element, _depth in walk(out):
        assert not element.tag.is_private, element.tag
        assert not ps315.in_curve_or_overlay(element.tag), element.tag
    assert NAME not in str(out) and "Jane" not in str(out) and "JANE" not in str(out)
    assert codes(out) == ["113100", "113107"]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_a_time_zone_offset_is_dropped_with_the_time_zone_attribute():
    deidentifier = Deidentifier(SEED)
    out = read(deidentifier.deidentify(part10(the_whole_table())))
    for keyword in ("AcquisitionDateTime", "FrameAcquisitionDateTime"):
        assert "+" not in out[keyword].value
    assert "TimezoneOffsetFromUTC" not in out


# --- 2. every file pydicom ships ---------------------------------------------------------------


def readable_part10_files() -> list[Path]:
    files = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sample_files():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - the directory also holds files that are not DICOM at all
                continue
            if ds.get("SOPInstanceUID") and "TransferSyntaxUID" in ds.file_meta:
                files.append(path)
    return files


def text_of(element: DataElement) -> Any:
    value = element.value
    if isinstance(value, bytes):
        return value
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return tuple(str(v) for v in value)
    return str(value) if value is not None else ""


NEUTRAL = {"ANONYMOUS", "ANONYMIZED", "0", "0.0", "000D", "000000", ""}


def is_neutral(value: Any) -> bool:
    if isinstance(value, bytes):
        return not any(value)
    if isinstance(value, tuple):
        return all(v in NEUTRAL for v in value)
    return value in NEUTRAL


def test_no_table_attribute_keeps_its_original_value_in_any_pydicom_test_file():
    files = readable_part10_files()
    assert len(files) > 140
    deidentifier = Deidentifier(SEED)
    failures = []
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = pydicom.dcmread(path)
            originals: dict[int, set] = {}
            for element, _depth in walk(original):
                if ps315.rule_for(element.tag) is not None:
                    originals.setdefault(element.tag, set()).add(text_of(element))
            with path.open("rb") as fh:
                out = read(deidentifier.deidentify(fh))
        for element, _depth in walk(out):
            tag = element.tag
            if tag.is_private or ps315.in_curve_or_overlay(tag) or tag.element == 0:
                failures.append(f"{path.name}: {tag} should be gone")
                continue
            rule = ps315.rule_for(tag)
            if element.VR == "PN" and text_of(element) not in ("ANONYMOUS", ""):
                failures.append(f"{path.name}: {element.keyword} is a name {element.value!r}")
            if rule is None or element.VR == "SQ":  # a sequence's content is checked item by item
                continue
            value = text_of(element)
            if value in ("", ()) or is_neutral(value) or value not in originals.get(tag, ()):
                continue
            action = rule.action(PATIENT_COPY_OPTIONS)
            # Only a declared K may keep a value (113107 shifts dates; times follow the profile).
            if action == "K":
                continue
            failures.append(f"{path.name}: {rule.keyword or rule.name} ({rule.basic}) kept {value!r}")
        if {e.keyword for e in out.file_meta} - META_ALLOWED:
            failures.append(f"{path.name}: file meta keeps {({e.keyword for e in out.file_meta} - META_ALLOWED)}")
        if out.file_meta.MediaStorageSOPInstanceUID != out.SOPInstanceUID or out.SOPInstanceUID == original.SOPInstanceUID:
            failures.append(f"{path.name}: SOP Instance UID not replaced consistently")
        if out.PatientIdentityRemoved != "YES" or codes(out) != ["113100", "113107"]:
            failures.append(f"{path.name}: declarations {codes(out)}")
    assert failures == []


# --- 3. declarations, neutral values, UIDs, pixels --------------------------------------------


def two_instances(tmp_path: Path) -> tuple[Path, Path]:
    study, series = "1.2.826.0.1.3680043.10.999.10", "1.2.826.0.1.3680043.10.999.11"
    first = synth.write_instance(tmp_path / "1.dcm", study_uid=study, series_uid=series,
                                 sop_uid="1.2.826.0.1.3680043.10.999.12")
    item = Dataset()
    item.ReferencedSOPClassUID = pydicom.uid.CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.999.12"
    second = synth.write_instance(tmp_path / "2.dcm", study_uid=study, series_uid=series,
                                  sop_uid="1.2.826.0.1.3680043.10.999.13",
                                  values={"ReferencedImageSequence": Sequence([item])})
    return first, second


def deidentified(deidentifier: Deidentifier, path: Path, **kwargs: Any) -> tuple[deidentify.DeidentifiedFile, Dataset]:
    with path.open("rb") as fh:
        result = deidentifier.deidentify(fh, **kwargs)
    ds = read(result)
    result.file.seek(0)
    return result, ds


def test_uids_match_inside_one_archive_and_differ_across_two(tmp_path):
    first, second = two_instances(tmp_path)
    archive = Deidentifier()
    _, a = deidentified(archive, first)
    _, b = deidentified(archive, second)
    assert a.StudyInstanceUID == b.StudyInstanceUID != "1.2.826.0.1.3680043.10.999.10"
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # references still resolve
    assert all(len(uid) <= 64 and uid.startswith("2.25.") for uid in (a.StudyInstanceUID, a.SOPInstanceUID))
    _, c = deidentified(Deidentifier(), first)
    assert c.StudyInstanceUID != a.StudyInstanceUID and c.SOPInstanceUID != a.SOPInstanceUID


def test_dates_move_by_one_archive_wide_shift_and_the_copy_declares_it(tmp_path):
    first, second = two_instances(tmp_path)
    archive = Deidentifier()
    assert dt.timedelta(days=366) <= archive.shift <= dt.timedelta(days=3652)
    result, a = deidentified(archive, first)
    _, b = deidentified(archive, second)
    assert a.StudyDate == b.StudyDate == shifted("20240102", archive.shift)
    assert a.get("StudyTime", "") in ("", "000000")  # a true time of day would date a shifted visit
    assert a.PatientBirthDate == ""
    assert a.PatientIdentityRemoved == "YES" and a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert codes(a) == ["113100", "113107"]
    assert a.DeidentificationMethodCodeSequence[1].CodeMeaning == ps315.OPTIONS["retain_long_modified_dates"][1]
    assert a.DeidentificationMethod == deidentify.method_text() and len(a.DeidentificationMethod) <= 64
    assert result.options == PATIENT_COPY_OPTIONS and not result.pixels_masked
    assert result.pixel_sha256 == hashlib.sha256(a.PixelData).hexdigest()
    assert a.file_meta.ImplementationVersionName == "LIGHTBOX"


def test_names_are_replaced_by_a_neutral_word_never_a_realistic_fake(tmp_path):
    path = synth.write_instance(tmp_path / "n.dcm", values={
        "PatientName": "MCMAHON^MARYANNE", "ReferringPhysicianName": "HOUSE^GREGORY", "OperatorsName": "KIM^LEE",
        "PerformingPhysicianName": "GREY^MEREDITH", "InstitutionName": "Wuhan Overlook Clinic"})
    _, out = deidentified(Deidentifier(), path)
    names = {str(e.value) for e, _ in walk(out) if e.VR == "PN"}
    assert names <= {"ANONYMOUS", ""}
    assert "InstitutionName" not in out or out.InstitutionName in ("", "ANONYMIZED")
    for word in ("MCMAHON", "HOUSE", "KIM", "GREY", "Wuhan"):
        assert word not in str(out)


def white_box_instance(tmp_path: Path) -> Path:
    path = synth.write_instance(tmp_path / "us.dcm", rows=32, cols=48, values={"BurnedInAnnotation": "YES"})
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    pixels[4:12, 6:30] = 4095  # the "text": white on a noisy frame
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_masked_region_is_black_in_the_copy_and_only_then_113101_is_declared(tmp_path):
    path = white_box_instance(tmp_path)
    original = pydicom.dcmread(path).pixel_array
    result, out = deidentified(Deidentifier(), path, text_regions=[{"frame": 0, "box": [6, 4, 24, 8]}])
    masked = out.pixel_array
    assert (masked[4:12, 6:30] == original.min()).all()
    outside = np.ones(original.shape, bool)
    outside[4:12, 6:30] = False
    assert (masked[outside] == original[outside]).all()
    assert result.pixels_masked and result.burned_in_annotation  # what the original said
    assert out.BurnedInAnnotation == "NO"
    assert codes(out) == ["113100", "113107", "113101"]
    assert result.options == (*PATIENT_COPY_OPTIONS, "clean_pixel_data")
    assert result.pixel_sha256 == hashlib.sha256(out.PixelData).hexdigest()
    assert deidentify.pixel_sha256_of(result.file) == result.pixel_sha256  # what "Verify a copy" recomputes
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian

    plain, kept = deidentified(Deidentifier(), path)
    assert not plain.pixels_masked and "113101" not in codes(kept) and kept.BurnedInAnnotation == "YES"
    outside_frame, _ = deidentified(Deidentifier(), path, text_regions=[{"frame": 0, "box": [100, 100, 5, 5]}])
    assert not outside_frame.pixels_masked  # a region outside the image cleans nothing


def test_masking_a_compressed_colour_multiframe_touches_only_its_frame():
    path = synth.bundled_file("SC_rgb_rle_2frame.dcm")
    original = pydicom.dcmread(path).pixel_array
    result, out = deidentified(Deidentifier(), path, text_regions=[{"frame": 1, "box": [10, 20, 30, 15]}])
    masked = out.pixel_array
    assert result.pixels_masked and out.PhotometricInterpretation == "RGB" and out.PlanarConfiguration == 0
    assert (masked[0] == original[0]).all()
    assert (masked[1, 20:35, 10:40] == original[1].min()).all()
    assert (masked[1, 40:] == original[1, 40:]).all()


def test_a_lossy_ybr_jpeg_is_decoded_to_rgb_and_stays_marked_lossy():
    path = synth.bundled_file("SC_rgb_jpeg_dcmtk.dcm")
    result, out = deidentified(Deidentifier(), path, text_regions=[{"frame": 0, "box": [0, 0, 10, 10]}])
    assert result.pixels_masked and out.PhotometricInterpretation == "RGB"
    assert out.LossyImageCompression == "01"
    assert (out.pixel_array[0:10, 0:10] == out.pixel_array[0:10, 0:10].min()).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_file_that_cannot_be_read_fails_with_a_reason_and_no_value():
    with pytest.raises(deidentify.DeidentificationFailed) as caught:
        Deidentifier().deidentify(io.BytesIO(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x08\x00" + b"JANE DOE"))
    assert "JANE" not in caught.value.reason


def test_pixels_that_cannot_be_decoded_fail_the_file_rather_than_ship_unmasked_text():
    with synth.bundled_file("MR_truncated.dcm").open("rb") as fh, pytest.raises(deidentify.DeidentificationFailed) as caught:
        Deidentifier().deidentify(fh, text_regions=[{"frame": 0, "box": [0, 0, 8, 8]}])
    assert caught.value.reason == "could not mask the pixels (ValueError)"


# --- regression: what the de-identifier used before kept -----------------------------------------

ISSUE_VALUES = {
    "DeviceSerialNumber": "SN-884122", "AdmissionID": "ADM-5531", "StudyDescription": "Jane's knee",
    "SeriesDescription": "LEFT KNEE JANE", "ProtocolName": "KNEE_JS_PROTOCOL", "AcquisitionComments": "Jane moved",
    "ContrastBolusAgent": "GADO-JS", "TimezoneOffsetFromUTC": "+0930", "PerformedStationAETitle": "MRI_NORTH_7",
    "PerformedStationName": "NORTHWING-MR", "DeviceDescription": "Scanner in room 7", "VerifyingOrganization": "Clinic Q",
    "PatientSex": "F",
}


def test_what_the_old_deidentifier_kept_is_gone(tmp_path):
    path = synth.write_instance(tmp_path / "i.dcm", values=ISSUE_VALUES)
    ds = pydicom.dcmread(path)
    device = Dataset()
    device.DeviceSerialNumber = "SN-IN-SEQUENCE-1"
    ds.DeviceSequence = Sequence([device])
    text = Dataset()
    text.UnformattedTextValue = "JANE SMITH 1970"
    ds.GraphicAnnotationSequence = Sequence([Dataset()])
    ds.GraphicAnnotationSequence[0].TextObjectSequence = Sequence([text])
    waveform = Dataset()
    waveform.MultiplexGroupLabel = "JANE ECG"
    waveform.WaveformAnnotationSequence = Sequence([Dataset()])
    waveform.WaveformAnnotationSequence[0].UnformattedTextValue = "JANE SMITH ECG"
    ds.WaveformSequence = Sequence([waveform])
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60000022, "LO", "OVERLAY-DESC-JS")
    ds.add_new(0x60001500, "LO", "OVERLAY-LABEL-JS")
    ds.add_new(0x60003000, "OW", b"\x0f\x00")
    ds.add_new(0x60004000, "LT", "OVERLAY-COMMENT-JS")
    ds.add_new(0x50000022, "LO", "CURVE-DESC-JS")
    ds.add_new(0x50003000, "OB", b"\x01\x02")
    ds.file_meta.SourceApplicationEntityTitle = "SOURCE_AE_JS"
    ds.save_as(path, enforce_file_format=True)

    with path.open("rb") as fh:
        out = read(Deidentifier().deidentify(fh))
    texts = [str(e.value) for e, _ in walk(out.file_meta)] + [str(e.value) for e, _ in walk(out)]
    distinctive = [v for v in ISSUE_VALUES.values() if len(v) > 1]  # PatientSex "F" is checked on its own
    found = [value for value in (*distinctive, "SN-IN-SEQUENCE-1", "JANE", "OVERLAY", "CURVE", "SOURCE_AE")
             if any(value in t for t in texts)]
    assert found == []
    assert out.get("PatientSex", "") == ""
    assert not any(ps315.in_curve_or_overlay(e.tag) for e, _ in walk(out))
    assert out.LongitudinalTemporalInformationModified == "MODIFIED" and "113107" in codes(out)

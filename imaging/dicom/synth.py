"""Generated phantoms and identity rewriting, for demo data (``imaging.demo``) and benchmarks.

Every file written here is a complete Part 10 file that then goes through the normal ingest, so
demo studies exercise the same code as real ones. Pixel content is synthetic (ellipse phantoms
with plausible Hounsfield units / intensities); headers carry the identifying attributes a real
scanner writes, so the "what this scan reveals" report has something true to show.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)


def new_uid() -> str:
    # "2.25." + a random UUID as an integer (PS3.5 B.2): needs no registered organisation root
    # and cannot collide with a hospital's UIDs.
    return str(generate_uid(prefix=None))


@dataclass(frozen=True)
class Identity:
    family: str
    given: str
    patient_id: str
    issuer: str
    birth_date: dt.date | None
    sex: str = "O"

    @property
    def pn(self) -> str:
        return f"{self.family}^{self.given}"


@dataclass
class StudyHeader:
    description: str
    date: dt.date
    time: dt.time
    institution: str
    referring_physician: str  # DICOM PN: Family^Given^^Prefix
    accession: str
    modality: str
    station: str = ""
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    operator: str = ""
    performing_physician: str = ""
    institution_address: str = ""
    body_part: str = ""
    uid: str = field(default_factory=new_uid)


def _base(identity: Identity, study: StudyHeader, sop_class: str, series_uid: str, series_number: int,
          series_description: str, number: int, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    sop_uid = new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study.uid + ".1" if len(study.uid) < 62 else new_uid()
    _set_identity(ds, identity)
    _set_study_details(ds, study, series_description=series_description, series_number=series_number, number=number)
    ds.StudyID = study.accession[-8:]
    ds.Manufacturer = study.manufacturer
    ds.ManufacturerModelName = study.model
    ds.BurnedInAnnotation = "NO"
    ds.PatientPosition = "HFS"
    return ds


def _set_study_details(ds: Dataset, study, *, series_description: str, series_number: int, number: int) -> None:
    """The study-level header a scanner writes: dates, descriptions, place, people, device."""
    date, time = study.date.strftime("%Y%m%d"), study.time.strftime("%H%M%S")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.StudyDescription = study.description
    ds.SeriesDescription = series_description
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.InstitutionName = study.institution
    ds.ReferringPhysicianName = study.referring_physician
    optional = {
        "InstitutionAddress": study.institution_address,
        "PerformingPhysicianName": study.performing_physician,
        "OperatorsName": study.operator,
        "StationName": study.station,
        "DeviceSerialNumber": study.serial,
        "BodyPartExamined": study.body_part,
    }
    for keyword, value in optional.items():
        if value:
            setattr(ds, keyword, value)


def _set_identity(ds: Dataset, identity: Identity) -> None:
    ds.PatientName = identity.pn
    ds.PatientID = identity.patient_id
    ds.IssuerOfPatientID = identity.issuer
    ds.PatientBirthDate = identity.birth_date.strftime("%Y%m%d") if identity.birth_date else ""
    ds.PatientSex = identity.sex


def _set_pixels(ds: Dataset, pixels: np.ndarray, *, signed: bool, bits_stored: int,
                photometric: str = "MONOCHROME2") -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()


def _save(ds: Dataset, path: Path, compress: str | None = None) -> Path:
    if compress:
        ds.compress(compress, encoding_plugin="pylibjpeg" if compress == RLELossless else "")
    ds.save_as(path, enforce_file_format=True)
    return path


# --- Phantoms ------------------------------------------------------------------------------


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def ct_chest_slice(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """Hounsfield units of an axial chest slice; ``z`` runs 0 (lung bases) to 1 (apices)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    body = _ellipse(yy, xx, 0.52, 0.5, 0.33, 0.44)
    hu[body] = -90.0  # subcutaneous fat
    hu[_ellipse(yy, xx, 0.52, 0.5, 0.30, 0.41)] = 45.0  # muscle and mediastinum
    lung_scale = 0.55 + 0.45 * np.sin(np.pi * min(max(z, 0.05), 0.95))
    for cx in (0.32, 0.68):
        lung = _ellipse(yy, xx, 0.48, cx, 0.22 * lung_scale, 0.13 * lung_scale)
        hu[lung] = -860.0
    heart_r = 0.13 * (1.0 - 0.8 * z)
    if heart_r > 0.02:
        hu[_ellipse(yy, xx, 0.55, 0.54, heart_r, heart_r * 1.15)] = 40.0
    hu[_ellipse(yy, xx, 0.40, 0.5, 0.035, 0.035)] = 180.0  # contrast-filled aorta
    hu[_ellipse(yy, xx, 0.76, 0.5, 0.06, 0.05)] = 650.0  # vertebral body
    hu[_ellipse(yy, xx, 0.77, 0.5, 0.03, 0.025)] = 30.0  # spinal canal
    angles = np.linspace(0.15 * np.pi, 0.85 * np.pi, 7)
    for a in np.concatenate([angles, angles + np.pi]):
        cy, cx = 0.52 + 0.285 * np.sin(a), 0.5 + 0.39 * np.cos(a)
        hu[_ellipse(yy, xx, cy, cx, 0.018, 0.018)] = 900.0  # ribs
    vessels = rng.random((size, size)) > 0.9985
    hu[vessels & (hu < -500)] = 20.0
    hu += rng.normal(0.0, 12.0, size=(size, size)).astype(np.float32)
    return hu


def mr_head_slice(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """T2-like intensities of an axial head slice (Shepp-Logan style ellipses)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    scale = np.sqrt(max(1.0 - (2 * z - 1) ** 2, 0.05))
    img = np.zeros((size, size), dtype=np.float32)
    img[_ellipse(yy, xx, 0.5, 0.5, 0.42 * scale, 0.34 * scale)] = 300.0  # scalp/skull marrow
    img[_ellipse(yy, xx, 0.5, 0.5, 0.39 * scale, 0.31 * scale)] = 60.0  # skull
    img[_ellipse(yy, xx, 0.5, 0.5, 0.37 * scale, 0.29 * scale)] = 1300.0  # CSF rim
    img[_ellipse(yy, xx, 0.5, 0.5, 0.35 * scale, 0.27 * scale)] = 700.0  # grey matter
    img[_ellipse(yy, xx, 0.5, 0.5, 0.28 * scale, 0.21 * scale)] = 520.0  # white matter
    for cx in (0.44, 0.56):
        img[_ellipse(yy, xx, 0.48, cx, 0.09 * scale, 0.03 * scale)] = 1600.0  # ventricles
    img += rng.normal(0.0, 18.0, size=(size, size)).astype(np.float32)
    return np.clip(img, 0, 4095)


def radiograph(rows: int, cols: int, lateral: bool, rng: np.random.Generator) -> np.ndarray:
    """A 12-bit chest radiograph: bright bone and soft tissue, dark lungs."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    yy /= rows
    xx /= cols
    img = np.full((rows, cols), 300.0, dtype=np.float32)
    img[_ellipse(yy, xx, 0.55, 0.5, 0.5, 0.42 if not lateral else 0.3)] = 2300.0
    if lateral:
        img[_ellipse(yy, xx, 0.5, 0.48, 0.3, 0.2)] = 1100.0
        img[(xx > 0.66) & (xx < 0.72) & (yy > 0.15)] = 3300.0  # spine
    else:
        for cx in (0.33, 0.67):
            img[_ellipse(yy, xx, 0.48, cx, 0.3, 0.14)] = 900.0
        img[_ellipse(yy, xx, 0.6, 0.55, 0.14, 0.12)] = 2200.0  # heart
        img[(xx > 0.48) & (xx < 0.52)] = np.maximum(img[(xx > 0.48) & (xx < 0.52)], 2900.0)
        for k in range(9):  # ribs
            cy = 0.22 + k * 0.065
            arc = np.abs(yy - (cy + 0.12 * ((xx - 0.5) ** 2) * 4)) < 0.008
            img[arc & (img < 2000)] += 700.0
        img[_ellipse(yy, xx, 0.16, 0.3, 0.015, 0.14)] = 3000.0  # clavicles
        img[_ellipse(yy, xx, 0.16, 0.7, 0.015, 0.14)] = 3000.0
    # Soften edges like scatter does, then add quantum noise.
    kernel = np.ones(9, dtype=np.float32) / 9
    img = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, img)
    img = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, img)
    img += rng.normal(0.0, 25.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 4095)


# --- Series writers -----------------------------------------------------------------------


def write_ct_series(directory: Path, identity: Identity, study: StudyHeader, *, slices: int = 40,
                    size: int = 256, series_number: int = 2, description: str = "AXIAL 5MM C+",
                    thickness: float = 5.0, seed: int = 1, compress: str | None = None) -> list[Path]:
    """An axial CT series with HU values stored as unsigned + RescaleIntercept -1024."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = new_uid()
    spacing = 360.0 / size  # a 36 cm field of view
    paths = []
    for i in range(slices):
        z = i / max(slices - 1, 1)
        hu = ct_chest_slice(size, z, rng)
        ds = _base(identity, study, CTImageStorage, series_uid, series_number, description, i + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.SliceThickness = f"{thickness:g}"
        location = -250.0 + i * thickness
        ds.ImagePositionPatient = [f"{-180.0:g}", f"{-180.0:g}", f"{location:g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{location:g}"
        ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = ["40", "-600"]
        ds.WindowWidth = ["400", "1500"]
        ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
        _set_pixels(ds, np.clip(hu + 1024.0, 0, 4095), signed=False, bits_stored=12)
        paths.append(_save(ds, directory / f"CT{i + 1:04d}.dcm", compress))
    return paths


def write_mr_series(directory: Path, identity: Identity, study: StudyHeader, *, slices: int = 20,
                    size: int = 256, series_number: int = 3, description: str = "AX T2 FSE",
                    seed: int = 2) -> list[Path]:
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = new_uid()
    thickness = 5.0
    paths = []
    for i in range(slices):
        img = mr_head_slice(size, i / max(slices - 1, 1), rng)
        ds = _base(identity, study, MRImageStorage, series_uid, series_number, description, i + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.MagneticFieldStrength = "1.5"
        ds.RepetitionTime = "4000"
        ds.EchoTime = "100"
        ds.SliceThickness = f"{thickness:g}"
        location = -40.0 + i * (thickness + 1.0)
        ds.ImagePositionPatient = ["-115", "-115", f"{location:g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{location:g}"
        ds.PixelSpacing = [f"{230.0 / size:.6g}", f"{230.0 / size:.6g}"]
        ds.WindowCenter = "800"
        ds.WindowWidth = "1600"
        _set_pixels(ds, img, signed=False, bits_stored=12)
        paths.append(_save(ds, directory / f"MR{i + 1:04d}.dcm", RLELossless))
    return paths


def write_radiographs(directory: Path, identity: Identity, study: StudyHeader, *, rows: int = 1024,
                      cols: int = 880, seed: int = 3) -> list[Path]:
    """PA and lateral chest radiographs (DX, MONOCHROME2, JPEG 2000 lossless)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for number, (view, lateral) in enumerate((("PA", False), ("LL", True)), start=1):
        ds = _base(identity, study, DigitalXRayImageStorageForPresentation, new_uid(), number,
                   f"CHEST {view}", 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ViewPosition = view
        ds.ImagerPixelSpacing = ["0.35", "0.35"]
        ds.PixelSpacing = ["0.35", "0.35"]
        ds.WindowCenter = "2048"
        ds.WindowWidth = "4096"
        ds.PresentationLUTShape = "IDENTITY"
        _set_pixels(ds, radiograph(rows, cols, lateral, rng), signed=False, bits_stored=12)
        ds.LossyImageCompression = "00"
        paths.append(_save(ds, directory / f"DX{number:04d}.dcm", JPEG2000Lossless))
    return paths


def rewrite_bundled(source: str | os.PathLike[str], target: Path, identity: Identity, study: StudyHeader, *,
                    series_uid: str, series_number: int, description: str, number: int = 1,
                    burned_in: bool = False) -> Path:
    """Copy a real file (e.g. one of pydicom's bundled samples) with our patient's identity, our
    study and new UIDs. Pixel data, compressed or not, is copied byte for byte."""
    ds = pydicom.dcmread(source, force=False)
    for keyword in ("OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "PatientAddress",
                    "PatientTelephoneNumbers", "RequestingPhysician", "PhysiciansOfRecord"):
        if keyword in ds:
            delattr(ds, keyword)
    _set_identity(ds, identity)
    sop_uid = new_uid()
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series_uid
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = new_uid()
    _set_study_details(ds, study, series_description=description, series_number=series_number, number=number)
    # Some samples carry text burned into the pixels; the header must say so.
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    os.makedirs(target.parent, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def samples_dir() -> Path:
    """pydicom's bundled sample directory. Only files present on disk are used: pydicom's
    ``get_testdata_file`` would try to download the others, which must never happen here."""
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def bundled_file(name: str) -> Path:
    """A file shipped inside pydicom's package (never downloaded)."""
    path = samples_dir() / name
    if not path.is_file():
        raise FileNotFoundError(name)
    return path


# --- Small files for tests and benchmarks ---------------------------------------------------


def write_instance(path: Path, *, patient_id: str = "TEST0001", issuer: str = "", rows: int = 16, cols: int = 16,
                   study_uid: str | None = None, series_uid: str | None = None, sop_uid: str | None = None,
                   values: dict[str, object] | None = None, delete: tuple[str, ...] = (),
                   preamble: bytes | None = None, seed: int = 0) -> Path:
    """A small valid CT instance, optionally with header values replaced or removed (to craft
    bad input: ``values={"SOPInstanceUID": "../../etc"}``, ``delete=("PatientID",)``)."""
    with warnings_suppressed():
        return _write_instance(path, patient_id=patient_id, issuer=issuer, rows=rows, cols=cols, study_uid=study_uid,
                               series_uid=series_uid, sop_uid=sop_uid, values=values, delete=delete,
                               preamble=preamble, seed=seed)


def _write_instance(path: Path, *, patient_id: str, issuer: str, rows: int, cols: int, study_uid: str | None,
                    series_uid: str | None, sop_uid: str | None, values: dict[str, object] | None,
                    delete: tuple[str, ...], preamble: bytes | None, seed: int) -> Path:
    identity = Identity("Test", "Patient", patient_id, issuer, dt.date(1970, 1, 1))
    study = StudyHeader(description="TEST STUDY", date=dt.date(2024, 1, 2), time=dt.time(10, 0), institution="Test",
                        referring_physician="", accession="T1", modality="CT", uid=study_uid or new_uid())
    ds = _base(identity, study, CTImageStorage, series_uid or new_uid(), 1, "TEST SERIES", 1)
    if not issuer:
        del ds.IssuerOfPatientID
    if sop_uid:
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    rng = np.random.default_rng(seed)
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    _set_pixels(ds, rng.integers(0, 4095, size=(rows, cols)), signed=False, bits_stored=12)
    for keyword, value in (values or {}).items():
        setattr(ds, keyword, value)
    for keyword in delete:
        if keyword in ds:
            delattr(ds, keyword)
    if preamble is not None:
        ds.preamble = preamble.ljust(128, b"\0")[:128]
    os.makedirs(path.parent, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _decode_all_elements(ds: pydicom.Dataset) -> None:
    """Decode every raw element (pydicom decodes lazily, on access), so elements read as
    implicit VR get a VR before the file is written back as explicit VR."""
    for element in ds.iterall():
        _ = element.value


def with_identity(source: str | os.PathLike[str], target: Path, patient_id: str) -> Path:
    """Copy a sample file adding what ingest requires and it lacks (Patient ID, UIDs)."""
    with warnings_suppressed():
        ds = pydicom.dcmread(source, force=False)
        _decode_all_elements(ds)
        ds.PatientID = patient_id
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(keyword, "")).strip():
                setattr(ds, keyword, new_uid())
        os.makedirs(target.parent, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
    return target


@contextlib.contextmanager
def warnings_suppressed() -> Iterator[None]:
    # pydicom warns about the very values the tests craft on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

"""Decompression bombs and lying pixel headers, generated (docs/security.md §21).

Small on disk, huge when decoded: RLE Lossless frames written by hand (PS3.5 Annex G), each row
one PackBits "replicate" run after another, so 128 decoded bytes cost 2 stored bytes. pydicom's
own RLE encoder is not used: it encodes real pixels, which would have to exist in memory first.
"""

from __future__ import annotations

import io
import struct

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def rle_frame(rows: int, columns: int, value: int = 0x55) -> bytes:
    """One 8-bit, 1-sample RLE frame of ``rows`` x ``columns`` pixels all equal to ``value``.

    The RLE header (64 bytes: one segment, at offset 64), then the segment: each row encoded on
    its own (G.3.1), as runs of at most 128 copies (byte -127 then the value)."""
    full, rest = divmod(columns, 128)
    row = bytes([0x81, value]) * full + (bytes([(257 - rest) & 0xFF, value]) if rest else b"")
    segment = row * rows
    if len(segment) % 2:
        segment += b"\x00"
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return header + segment


def header(*, rows: int, columns: int, frames: int | None, sop_uid: str | None = None,
           study_uid: str | None = None, series_uid: str | None = None, patient_id: str = "LBX-BOMB",
           transfer_syntax: str = RLELossless, bits: int = 8, samples: int = 1) -> Dataset:
    """A Secondary Capture header claiming the given geometry (no Pixel Data yet)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Bomb^Test"
    ds.Modality = "OT"
    ds.Rows = rows
    ds.Columns = columns
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    return ds


def to_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rle_bomb(*, rows: int = 8192, columns: int = 8192, frames: int = 8, extra_fragments: int = 0, **uids: str) -> bytes:
    """An RLE Lossless file of ``frames`` frames of ``rows`` x ``columns`` 8-bit pixels:
    8192 x 8192 x 8 (the default) is 8 MB on disk and 512 MiB decoded. ``extra_fragments``
    appends frames the header does not count."""
    ds = header(rows=rows, columns=columns, frames=frames, **uids)
    frame = rle_frame(rows, columns)
    ds.PixelData = encapsulate([frame] * (frames + extra_fragments), has_bot=False)
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


def native(*, rows: int, columns: int, frames: int, stored_frames: float, **uids: str) -> bytes:
    """Explicit VR Little Endian 8-bit pixels: the header claims ``frames`` frames, the value
    holds ``stored_frames`` frames' worth of bytes (fewer: truncated; more: frames it does not count)."""
    ds = header(rows=rows, columns=columns, frames=frames, transfer_syntax=ExplicitVRLittleEndian, **uids)
    length = int(rows * columns * stored_frames)
    ds.PixelData = bytes(length + length % 2)
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)

"""Masking text found in the pixels of a de-identified copy (PS3.15 Clean Pixel Data, 113101).

Called only by :meth:`imaging.dicom.deidentify.Deidentifier.deidentify` with the regions OCR
found (``imaging/pixel_text.py``). Frames are decoded one at a time with pydicom's own decoders
and written, uncompressed, to a temporary file that becomes the element's value (pydicom writes
such a "buffered" value without loading it), so memory holds one decoded frame, not the study.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import defaultdict
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, pack_bits
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless

from imaging.dicom import limits

# Byte widths of the binary VRs whose raw bytes follow the transfer syntax's byte order.
_SWAP_WIDTHS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
# Transfer syntaxes that are always lossy (JPEG 2000 may be either, so it is not assumed).
_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})
_ENCAPSULATED_ONLY = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")


def mask_regions(ds: Dataset, regions: list[dict]) -> str | None:
    """Fill each region (``{"frame": index from 0, "box": [x, y, w, h]}``) with the frame's
    black, rewrite Pixel Data uncompressed (Explicit VR Little Endian) and return the SHA-256 of
    the new Pixel Data value; None when the file has no Pixel Data or no region falls inside it
    (nothing was masked, so nothing may be declared). Raises ``limits.PixelLimitError`` before
    decoding anything when the header's decoded size is past ``DICOM_MAX_DECODED_BYTES``."""
    if "PixelData" not in ds or not regions:
        return None
    boxes: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for region in regions:
        x, y, w, h = (int(v) for v in region["box"])
        if w > 0 and h > 0:
            boxes[int(region.get("frame", 0))].append((x, y, w, h))
    if not boxes:
        return None
    # docs/security.md §21: the same size check as every other decoder's caller, before the first
    # frame is decoded (a stored original passed it at import; the limit may have been lowered since).
    limits.check_decoded_size(ds)
    meta = ds.file_meta
    syntax = meta.TransferSyntaxUID
    was_big_endian = not syntax.is_little_endian
    monochrome1 = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller after writing (_close_buffer)
    digest = hashlib.sha256()
    packed: list[np.ndarray] = []  # 1-bit frames are packed across frame boundaries, so kept to the end
    masked = False
    props: dict[str, Any] = {}
    for index, (frame, props) in enumerate(get_decoder(syntax).iter_array(ds, as_rgb=True)):
        frame = frame if frame.flags.writeable else frame.copy()
        for x, y, w, h in boxes.get(index, ()):
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
            if x1 > x0 and y1 > y0:
                # The darkest value of this frame is its black (MONOCHROME1 shows the highest as black).
                frame[y0:y1, x0:x1, ...] = frame.max() if monochrome1 else frame.min()
                masked = True
        if int(props["bits_allocated"]) == 1:
            packed.append(frame.astype(np.uint8).ravel())
            continue
        data = frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()
        digest.update(data)
        out.write(data)
    if not masked:
        out.close()
        return None
    if packed:
        data = pack_bits(np.concatenate(packed), pad=False)
        digest.update(data)
        out.write(data)
    if out.tell() % 2:  # PS3.5 7.1.1: values have even length
        digest.update(b"\0")
        out.write(b"\0")
    out.seek(0)
    lossy = syntax in _LOSSY
    if was_big_endian:
        _swap_bytes(ds)
    element = DataElement(0x7FE00010, "OB" if int(props["bits_allocated"]) <= 8 else "OW", out)
    ds["PixelData"] = element
    for keyword in _ENCAPSULATED_ONLY:
        if keyword in ds:
            delattr(ds, keyword)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation = str(props["photometric_interpretation"])
    ds.BitsAllocated = int(props["bits_allocated"])
    if int(props["samples_per_pixel"]) > 1:
        ds.PlanarConfiguration = 0  # frames come out interleaved (rows, columns, samples)
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if lossy:
        # PS3.3 C.7.6.1.1.5: once lossy, always lossy; ratio and method stay as its history.
        ds.LossyImageCompression = "01"
    return digest.hexdigest()


def _swap_bytes(ds: Dataset) -> None:
    """Big-endian files become little-endian: numbers pydicom decoded are re-encoded when written,
    but OW/OF/OL/OD/OV values are raw bytes in the old order and must be swapped."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_bytes(item)
        elif elem.VR in _SWAP_WIDTHS and elem.tag != 0x7FE00010 and isinstance(elem.value, bytes) and elem.value:
            width = _SWAP_WIDTHS[elem.VR]
            usable = len(elem.value) - len(elem.value) % width
            swapped = np.frombuffer(elem.value[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
            elem.value = swapped + elem.value[usable:]

"""Decode one frame of a stored DICOM file into an 8-bit PNG or WebP.

Called by ``imaging.services.render_frame`` / ``render_thumbnail`` (which cache the result), never
by views directly. The pipeline follows PS3.3 C.11: decode (pydicom + pylibjpeg plugins, colour
converted to RGB) → Modality LUT / rescale → VOI LUT or window → Presentation (MONOCHROME1 is
inverted) → 8 bits. Only the requested frame is read and decoded when the file allows it.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any, BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from imaging.dicom.parse import viewer_info
from imaging.errors import FORMATS, RenderError

# Frames above 64 M pixels (8k x 8k) are not rendered for the browser: decoding one takes
# over 500 MB as float32 on a two-core worker, and no screen shows that many pixels.
MAX_RENDER_PIXELS = 8192 * 8192
_DEFLATED = "1.2.840.10008.1.2.1.99"


def read_header(stream: BinaryIO) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream.seek(0)
        ds = pydicom.dcmread(stream, force=False, stop_before_pixels=True)
        stream.seek(0)
    return ds


def header_viewer_info(stream: BinaryIO, frame: int = 0) -> dict[str, Any]:
    """Viewer metadata read from the file (used when the row has none stored)."""
    try:
        return viewer_info(read_header(stream), frame)
    except Exception as exc:  # noqa: BLE001 - a stored file that no longer parses is reported, not raised raw
        raise RenderError(f"The stored file cannot be read: {exc}") from exc


def render(
    stream: BinaryIO,
    *,
    frame: int = 0,
    center: float | None = None,
    width: float | None = None,
    fmt: str = "png",
    max_size: int | None = None,
) -> bytes:
    """Render ``frame`` (0-based) of the DICOM file in ``stream`` (seekable, binary).

    ``center``/``width`` override the file's window (monochrome only); ``max_size`` shrinks the
    image to fit a square of that many pixels (thumbnails).
    """
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    if (center is None) != (width is None):
        raise RenderError("Give both window center and width, or neither.")
    if width is not None and (not math.isfinite(width) or width < 1 or not math.isfinite(center)):
        raise RenderError("Window width must be at least 1 and both values finite.")
    try:
        header = read_header(stream)
    except Exception as exc:  # noqa: BLE001
        raise RenderError(f"The stored file cannot be read: {_short(exc)}") from exc
    frames = _frames(header)
    if not 0 <= frame < frames:
        raise RenderError(f"Frame {frame} does not exist (the image has {frames}).")
    rows, cols = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    if rows * cols > MAX_RENDER_PIXELS:
        raise RenderError("The image is too large to display in the browser.")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = _decode(stream, header, frame)
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything on bad data
            raise RenderError(f"The image data cannot be decoded: {_short(exc)}") from exc
        try:
            pixels = _to_8bit(arr, header, frame, center, width)
        except Exception as exc:  # noqa: BLE001
            raise RenderError(f"The image cannot be displayed: {_short(exc)}") from exc

    image = Image.fromarray(pixels, "RGB" if pixels.ndim == 3 else "L")
    if max_size:
        image.thumbnail((max_size, max_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    if fmt == "png":
        # Level 3: within a few percent of the smallest PNG at a fraction of the encode time.
        image.save(out, "PNG", compress_level=3)
    else:
        image.save(out, "WEBP", quality=90, method=4)
    return out.getvalue()


def can_decode(path: str) -> bool:
    """Whether pydicom (with the installed plugins) decodes the first frame of the file at
    ``path``, read strictly (force=False). Used to classify sample files in tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=False)
            pixel_array(ds, index=0)
        except Exception:  # noqa: BLE001 - any failure means "cannot decode"
            return False
    return True


def _frames(header: Any) -> int:
    try:
        return max(int(float(str(header.get("NumberOfFrames") or 1))), 1)
    except (TypeError, ValueError):
        return 1


def _decode(stream: BinaryIO, header: Any, frame: int) -> np.ndarray:
    ts = str(header.file_meta.get("TransferSyntaxUID", ""))
    if ts == _DEFLATED:
        # A deflated dataset must be inflated as a whole before the pixel data can be found.
        stream.seek(0)
        ds = pydicom.dcmread(stream, force=False)
        return pixel_array(ds, index=frame)
    stream.seek(0)
    try:
        # From a file object pydicom reads only up to the pixel data and then only this frame.
        return pixel_array(stream, index=frame)
    except Exception:  # noqa: BLE001 - the lean reader is strict; the full dataset reader is not
        stream.seek(0)
        ds = pydicom.dcmread(stream, force=False)
        return pixel_array(ds, index=frame)


def _to_8bit(arr: np.ndarray, ds: Any, frame: int, center: float | None, width: float | None) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).upper().strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2]) if "RedPaletteColorLookupTableDescriptor" in ds else 8
        return _scale_color(rgb, 16 if bits > 8 else 8)
    if arr.ndim == 3:
        # pixel_array already converted YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT to RGB.
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        return _scale_color(arr, int(ds.get("BitsStored") or 8))

    info = viewer_info(ds, frame)
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(arr, ds).astype(np.float64)
    else:
        values = arr.astype(np.float64 if arr.dtype.itemsize >= 4 else np.float32)
        slope, intercept = info["rescale_slope"], info["rescale_intercept"]
        if slope != 1.0 or intercept != 0.0:
            values = values * slope + intercept

    function = str(ds.get("VOILUTFunction", "LINEAR")).upper().strip() or "LINEAR"
    if center is not None and width is not None:
        out = _window(values, center, width, "LINEAR")
    elif info["window_center"] is not None:
        out = _window(values, info["window_center"], info["window_width"], function)
    elif "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        lut_bits = int(lut.LUTDescriptor[2]) if "LUTDescriptor" in lut else 16
        mapped = apply_voi_lut(arr, ds, index=0, prefer_lut=True).astype(np.float64)
        out = np.clip(mapped * (255.0 / (2**lut_bits - 1)), 0, 255)
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        out = _window(values, (low + high) / 2, max(high - low, 1.0), "LINEAR_EXACT")

    out = np.nan_to_num(out, nan=0.0)
    pixels = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2: linear (default), linear exact and sigmoid windows onto 0..255."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return ((values - center) / width + 0.5) * 255.0
    if width <= 1:
        return np.where(values < center - 0.5, 0.0, 255.0)
    return ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0


def _scale_color(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(arr)
    top = float(2 ** min(max(bits, 1), 32) - 1)
    scaled = arr.astype(np.float64) * (255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]

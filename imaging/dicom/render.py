"""Decode one frame of a stored DICOM file into an 8-bit PNG or WebP.

Called by ``imaging.services.rendering.render_frame`` / ``render_thumbnail`` (which cache the result), never
by views directly. The pipeline follows PS3.3 C.11: decode (pydicom + pylibjpeg plugins, colour
converted to RGB) → Modality LUT / rescale → VOI LUT or window → Presentation (MONOCHROME1 is
inverted) → 8 bits. Only the requested frame is read and decoded when the file allows it.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from typing import Any, BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID

from imaging.dicom import limits
from imaging.dicom.parse import Header, viewer_info
from imaging.errors import FORMATS, RenderError

# Frames above 64 M pixels (8k x 8k) are not rendered for the browser: decoding one takes
# over 500 MB as float32 on a two-core worker, and no screen shows that many pixels.
MAX_RENDER_PIXELS = 8192 * 8192
# Instance.pixel_error is 300 characters; a reason is a sentence, not a traceback.
MAX_REASON_CHARS = 300
_DEFLATED = "1.2.840.10008.1.2.1.99"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_PALETTE_DATA = (0x00281201, 0x00281202, 0x00281203, 0x00281204)  # Red, Green, Blue, Alpha LUT Data
# Noise in decoder messages that means nothing to a reader: object addresses, libjpeg's codes.
_OBJECT_ADDRESS_RE = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")
_LIBJPEG_CODE_RE = re.compile(r"libjpeg error code '[-0-9]+' returned from \w+\(\):\s*")


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
    image to fit a square of that many pixels and centres it on a black square (thumbnails).
    """
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    if (center is None) != (width is None):
        raise RenderError("Give both window center and width, or neither.")
    if width is not None and (not math.isfinite(width) or width < 1 or not math.isfinite(center)):
        raise RenderError("Window width must be at least 1 and both values finite.")
    header = _header_or_error(stream)
    frames = _frames(header)
    if not 0 <= frame < frames:
        raise RenderError(f"Frame {frame} does not exist (the image has {frames}).")
    pixels = _display_pixels(stream, header, frame, center, width)

    image = Image.fromarray(pixels, "RGB" if pixels.ndim == 3 else "L")
    if max_size:
        image.thumbnail((max_size, max_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        # A square on black, as a viewer shows it: the picture then covers the page's
        # placeholder entirely once loaded (no placeholder text in the margins).
        square = Image.new(image.mode, (max_size, max_size), 0)
        square.paste(image, ((max_size - image.width) // 2, (max_size - image.height) // 2))
        image = square
    out = io.BytesIO()
    if fmt == "png":
        # Level 3: within a few percent of the smallest PNG at a fraction of the encode time.
        image.save(out, "PNG", compress_level=3)
    else:
        image.save(out, "WEBP", quality=90, method=4)
    return out.getvalue()


def decode_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the first frame of the DICOM file at ``path`` cannot be shown, in one plain sentence
    (at most ``MAX_REASON_CHARS``), or None when it decodes and converts for display.

    Called by ``imaging.services.ingest.dicom_import`` for every new image, so that an undecodable file
    is stored (it is still the patient's record) but marked, and its pages say why. The caller
    has already size-checked the header (``parse``); frames too large to show are refused here
    before any decoding (docs/security.md §21)."""
    try:
        with open(path, "rb") as stream:
            return stream_decode_problem(stream)
    except OSError as exc:
        return f"The file cannot be read ({exc.strerror or type(exc).__name__})."


def stream_decode_problem(stream: BinaryIO) -> str | None:
    """``decode_problem`` for an open, seekable stream (a stored file in any storage backend)."""
    try:
        _display_pixels(stream, _header_or_error(stream), 0, None, None, sample=True)
    except RenderError as exc:
        return exc.reason
    return None


def header_decode_problem(header: Header, viewer: dict[str, Any] | None = None) -> str | None:
    """``decode_problem`` for a file the import has already read and parsed
    (``parse.parse_buffer``): the header is not read again and the frame is decoded from the
    dataset in memory. ``viewer`` is the file's ``ParsedInstance.viewer`` (``viewer_info`` of
    frame 0), so it is not worked out a second time."""
    try:
        _display_pixels(io.BytesIO(header.data), header.dataset, 0, None, None, sample=True,
                        whole=True, info=viewer)
    except RenderError as exc:
        return exc.reason
    return None


def _header_or_error(stream: BinaryIO) -> Any:
    try:
        return read_header(stream)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a damaged file
        raise RenderError(_sentence("The stored file cannot be read", _first_line(exc))) from exc


def _display_pixels(
    stream: BinaryIO, header: Any, frame: int, center: float | None, width: float | None, *, sample: bool = False,
    whole: bool = False, info: dict[str, Any] | None = None,
) -> np.ndarray:
    """Decode ``frame`` and map it to 8 bits, or raise RenderError with a plain reason.

    ``sample``: map only every 8th row and column. Every step after decoding works pixel by
    pixel, so the sample meets the same failures; at import it cuts the check of a 512 x 512 CT
    slice from about 23 to 7 ms (this machine). ``whole``: ``header`` is the whole dataset, pixel
    data included (decoded from it rather than read again from ``stream``). ``info``:
    ``viewer_info(header, frame)`` when the caller has it."""
    try:
        ts = str(header.file_meta.get("TransferSyntaxUID", "") or "").strip()
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily: a bad one raises here
        raise RenderError(_sentence("The image size or format in the file cannot be read", _first_line(exc))) from exc
    try:
        # docs/security.md §21: the whole file's decoded size, before any frame is decoded.
        rows, cols = limits.check_decoded_size(header).shape[1:3]
    except limits.PixelLimitError as exc:
        raise RenderError(exc.reason) from exc
    if rows * cols > MAX_RENDER_PIXELS:
        raise RenderError(f"The image is too large to display in the browser ({cols} x {rows} pixels).")
    _check_decoder(ts)
    _check_codestream_size(stream, header, frame, ts, rows, cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = pixel_array(header, index=frame) if whole else _decode(stream, header, frame)
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything on bad data
            raise RenderError(_decode_failure(exc, ts)) from exc
        try:
            return _to_8bit(arr[::8, ::8] if sample else arr, header, frame, center, width, info)
        except Exception as exc:  # noqa: BLE001
            raise RenderError(_sentence("The image cannot be displayed", _first_line(exc))) from exc


def _check_decoder(ts: str) -> None:
    """A transfer syntax no installed plugin decodes (JPEG XL, MPEG video, a private one) is said
    so by name, rather than with pydicom's list of missing plugins."""
    uid = UID(ts)
    name = uid.name if uid.name != ts else ""
    if not uid.is_transfer_syntax:
        shown = ts[:64] if ts.isascii() and ts.isprintable() else ""
        raise RenderError(f"The image is stored in an unknown format (transfer syntax {shown or 'unreadable'}), which this server cannot decode.")
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:  # pydicom has no decoder class at all for this transfer syntax
        available = False
    if not available:
        raise RenderError(f"The image is compressed with {name or ts}, which this server cannot decode.")


def _check_codestream_size(stream: BinaryIO, header: Any, frame: int, ts: str, rows: int, cols: int) -> None:
    """Refuse a JPEG or JPEG 2000 frame whose codestream claims more pixels than the DICOM header
    (``limits.check_codestream``), reading only that frame's compressed bytes."""
    if not limits.codestream_checked(ts):
        return
    try:
        stream.seek(0)
        pydicom.dcmread(stream, force=False, stop_before_pixels=True)  # leaves the stream at (7FE0,0010)
        element = stream.read(12)
        if element[:4] != b"\xe0\x7f\x10\x00":
            return
        if element[4:6] not in (b"OB", b"OW", b"UN"):
            stream.seek(-4, io.SEEK_CUR)  # an implicit VR element header is 8 bytes, not 12
        offsets = header.get("ExtendedOffsetTable"), header.get("ExtendedOffsetTableLengths")
        data = get_frame(stream, frame, number_of_frames=_frames(header),
                         extended_offsets=offsets if all(offsets) else None)
    except Exception:  # noqa: BLE001 - an unreadable codestream is the decoder's to report
        return
    finally:
        stream.seek(0)
    try:
        limits.check_codestream(data, ts, rows, cols)
    except limits.PixelLimitError as exc:
        raise RenderError(exc.reason) from exc


def _decode_failure(exc: BaseException, ts: str) -> str:
    """A decoder's failure as one sentence. pydicom lists every plugin it tried ("Unable to
    decode as exceptions were raised by all available plugins:" then one line per plugin); the
    first plugin's own words are the useful part."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[0] if lines else type(exc).__name__
    if len(lines) > 1 and lines[0].lower().startswith("unable to decode"):
        detail = lines[1].split(":", 1)[1].strip() if ":" in lines[1] else lines[1]
    name = UID(ts).name if ts else ""
    subject = f"The image data ({name})" if name and name != ts else "The image data"
    return _sentence(f"{subject} is damaged or incomplete and cannot be decoded", detail)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _sentence(lead: str, detail: str) -> str:
    """``lead`` plus the library's words, cleaned (no object addresses, no control characters)
    and shortened at a word so the whole fits ``MAX_REASON_CHARS``."""
    detail = _LIBJPEG_CODE_RE.sub("", _OBJECT_ADDRESS_RE.sub("", detail))
    detail = "".join(ch for ch in detail if ch.isprintable()).strip().rstrip(".")
    if not detail:
        return f"{lead}."
    room = MAX_REASON_CHARS - len(lead) - len(" (technical detail: “”).")
    if len(detail) > room:
        detail = detail[: max(room - 1, 0)].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return f"{lead} (technical detail: “{detail}”)."


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


def _to_8bit(
    arr: np.ndarray, ds: Any, frame: int, center: float | None, width: float | None, info: dict[str, Any] | None = None
) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).upper().strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, _palette_in_little_endian(ds))
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2]) if "RedPaletteColorLookupTableDescriptor" in ds else 8
        return _scale_color(rgb, 16 if bits > 8 else 8)
    if arr.ndim == 3:
        # pixel_array already converted YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT to RGB.
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        return _scale_color(arr, int(ds.get("BitsStored") or 8))

    info = info or viewer_info(ds, frame)
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


def _palette_in_little_endian(ds: Any) -> Any:
    """The palette module of ``ds`` with its LUT data as a little-endian file would hold it.

    pydicom 3.0's ``apply_color_lut`` reads (0028,1201-1204) Palette Color Lookup Table Data
    with ``np.frombuffer`` in the machine's byte order, whatever the dataset's transfer syntax;
    its segmented-LUT branch and ``apply_modality_lut`` do look at the transfer syntax. An OW
    value in an Explicit VR Big Endian file holds big-endian words (PS3.5 7.3), so pydicom's
    OBXXXX1A_expb.dcm renders with its table's high and low bytes swapped: almost black.
    Upstream: the byte-order fixes for apply_color_lut in pydicom/pydicom#2147 (big-endian
    hosts) and the OW byte-order discussion around OBXXXX1A_expb in pydicom/pydicom#1687 do not
    cover a big-endian dataset read on a little-endian host; no upstream issue for that was found.
    The descriptor (US/SS) is already decoded with the dataset's byte order by pydicom.
    """
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts != _BIG_ENDIAN or not any(tag in ds for tag in _PALETTE_DATA):
        return ds
    module = Dataset()
    for element in ds.group_dataset(0x0028):
        if element.tag in _PALETTE_DATA and isinstance(element.value, bytes | bytearray):
            data = bytes(element.value)
            words = np.frombuffer(data[: len(data) - len(data) % 2], dtype=">u2")
            module.add(DataElement(element.tag, element.VR, words.astype("<u2").tobytes()))
        else:
            module.add(element)
    if "PixelPresentation" in ds:  # apply_color_lut refuses supplemental palettes; keep it able to
        module.PixelPresentation = ds.PixelPresentation
    return module


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


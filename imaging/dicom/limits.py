"""How much decoding untrusted pixels may cost, checked before any decoding (docs/security.md §21).

One rule for every caller that decodes pixel data: the import (``parse``, and ``render``'s check of
the first frame), the viewer's renders (``render``), OCR (``ocr``), masking text in a
de-identified copy (``deidentify_pixels``) and "Verify a copy" (``compare``):

- :func:`check_decoded_size`: the decoded size the header claims, NumberOfFrames x Rows x Columns
  x SamplesPerPixel x ceil(BitsAllocated / 8), against a limit (``DICOM_MAX_DECODED_BYTES``, or a
  lower one for patients' uploads). Header values that cannot describe an image (missing,
  negative, not whole numbers, a frame larger than any modality makes) are refused with a
  sentence, never a traceback. The decoders (pydicom and its pylibjpeg plugins) allocate what the
  header claims, so checking the header bounds what decoding allocates.
- :func:`check_pixel_data`: the pixel data agrees with the header: uncompressed data holds the
  frames the header counts (not fewer: truncated; not whole frames more), and compressed data has
  a fragment for every frame, one per frame for RLE, no more images than frames, offset tables of
  the right length.
- :func:`check_codestream`: a JPEG or JPEG 2000 frame whose own header claims more pixels than
  the DICOM header is refused before it is decoded (the codecs allocate what the codestream says).
- :func:`check_inflated_size`: a deflated dataset (which pydicom inflates whole while reading)
  inflates to no more than a limit, counted while inflating a chunk at a time.

Nothing here decodes pixels. Errors carry ``reason``: one plain sentence.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from pydicom.encaps import generate_fragments, generate_frames, parse_basic_offsets, parse_fragments
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

# One file's decoded pixels, when the setting is absent (portal/settings.py explains the 4 GiB).
# Above it a file is stored but not decoded (its pages say why).
DEFAULT_MAX_DECODED_BYTES = 4 * 1024**3
# A frame of 16k x 16k pixels (268 M) is beyond any radiology modality: such a header is lying.
MAX_FRAME_PIXELS = 16384 * 16384
# pydicom and its plugins decode these sizes; anything else in Bits Allocated is refused.
BITS_ALLOCATED = (1, 8, 16, 32, 64)
# 1 (monochrome, palette), 3 (RGB, YBR), 4 (retired ARGB/CMYK, still read by pydicom).
SAMPLES_PER_PIXEL = (1, 3, 4)
# NumberOfFrames is an IS (at most 12 characters): beyond 2^31 it is not a count of anything.
_MAX_COUNT = 2**31 - 1
_MIB = 1024**2
_INFLATE_CHUNK = 1024 * 1024
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
# How a compressed frame's codestream begins (JPEG and JPEG-LS SOI; JPEG 2000 SOC+SIZ; a JP2 box).
_IMAGE_STARTS = (b"\xff\xd8", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")
_WHOLE_RE = re.compile(r"[+]?[0-9]+")


class PixelLimitError(Exception):
    """The pixels will not be decoded; ``reason`` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidPixelHeader(PixelLimitError):
    """The header's size values cannot describe an image (missing, negative, not whole, absurd)."""


class PixelsTooLarge(PixelLimitError):
    """A real image size, but more than this caller decodes."""

    def __init__(self, reason: str, *, decoded_bytes: int, limit: int) -> None:
        super().__init__(reason)
        self.decoded_bytes = decoded_bytes
        self.limit = limit


class PixelDataMismatch(PixelLimitError):
    """The pixel data does not agree with the header (truncated, extra frames, bad fragments)."""


@dataclass(frozen=True)
class PixelGeometry:
    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int

    @property
    def bytes_per_sample(self) -> int:
        # Decoders return at least one byte per sample: 1-bit data is unpacked to uint8.
        return math.ceil(self.bits_allocated / 8)

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples * self.bytes_per_sample

    @property
    def decoded_bytes(self) -> int:
        return self.frames * self.frame_bytes

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.rows, self.columns, self.samples)


def max_decoded_bytes() -> int:
    """``DICOM_MAX_DECODED_BYTES``: the most one file's pixels may take decoded."""
    return int(getattr(settings, "DICOM_MAX_DECODED_BYTES", DEFAULT_MAX_DECODED_BYTES))


def megabytes(n: int) -> str:
    """A size for a sentence: "537 MB" (decimal, as people read file sizes)."""
    mb = n / 1000**2
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:,.1f} MB"


def geometry(header: Any) -> PixelGeometry:
    """The image size the header claims, each value checked; :class:`InvalidPixelHeader`
    otherwise. ``header``: a pydicom dataset (pixel data not needed)."""
    rows = _whole(header, "Rows", "Rows")
    columns = _whole(header, "Columns", "Columns")
    # 0 or absent: one frame, as pydicom's decoders read it.
    frames = _whole(header, "NumberOfFrames", "Number of Frames", default=1, zero=1)
    samples = _whole(header, "SamplesPerPixel", "Samples per Pixel", default=1)
    bits = _whole(header, "BitsAllocated", "Bits Allocated")
    if samples not in SAMPLES_PER_PIXEL:
        raise InvalidPixelHeader(f"Invalid image size: Samples per Pixel is {samples} (1, 3 or 4 are possible).")
    if bits not in BITS_ALLOCATED:
        raise InvalidPixelHeader(f"Unsupported Bits Allocated ({bits}).")
    if rows * columns > MAX_FRAME_PIXELS:
        raise InvalidPixelHeader(f"Absurd image size ({columns} x {rows} pixels a frame, larger than any scanner makes); refused.")
    return PixelGeometry(frames, rows, columns, samples, bits)


def check_decoded_size(header: Any, *, limit: int | None = None, frame_limit: int | None = None) -> PixelGeometry:
    """The header's geometry, if its decoded size is within ``limit`` bytes (default
    :func:`max_decoded_bytes`) and one frame within ``frame_limit`` (when given). Raises
    :class:`InvalidPixelHeader` or :class:`PixelsTooLarge`, before anything is decoded."""
    g = geometry(header)
    limit = max_decoded_bytes() if limit is None else limit
    if g.decoded_bytes > limit:
        raise PixelsTooLarge(
            f"The image would take {megabytes(g.decoded_bytes)} decoded ({g.frames} frame(s) of "
            f"{g.columns} x {g.rows} pixels), more than the {megabytes(limit)} allowed; it was not decoded.",
            decoded_bytes=g.decoded_bytes, limit=limit,
        )
    if frame_limit is not None and g.frame_bytes > frame_limit:
        raise PixelsTooLarge(
            f"One frame of the image would take {megabytes(g.frame_bytes)} decoded ({g.columns} x {g.rows} "
            f"pixels), more than the {megabytes(frame_limit)} allowed; it was not decoded.",
            decoded_bytes=g.frame_bytes, limit=frame_limit,
        )
    return g


def check_pixel_data(ds: Any, g: PixelGeometry) -> None:
    """Raise :class:`PixelDataMismatch` unless the pixel data of ``ds`` (a dataset read with
    its pixel data, possibly deferred) agrees with the geometry ``g`` its header claims."""
    tag = next((t for t in _PIXEL_TAGS if t in ds), None)
    if tag is None:
        return
    ts = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    raw = ds.get_item(tag)
    length = getattr(raw, "length", None)
    encapsulated = tag == 0x7FE00010 and ts.is_transfer_syntax and ts.is_encapsulated
    if not encapsulated:
        if length is None or length == 0xFFFFFFFF:
            value = ds[tag].value
            length = len(value) if isinstance(value, bytes | bytearray) else None
        if length is None:
            return
        _check_native_length(ds, g, length)
        return
    value = ds[tag].value
    if not isinstance(value, bytes | bytearray):
        return  # pydicom could not delimit it: the decoder will report the damage
    _check_fragments(ds, g, bytes(value), ts)


def _check_native_length(ds: Any, g: PixelGeometry, length: int) -> None:
    samples = g.samples
    if samples == 3 and str(ds.get("PhotometricInterpretation", "") or "").strip().upper() == "YBR_FULL_422":
        samples = 2  # chroma subsampled horizontally: two values per pixel on average
    frame_bits = g.rows * g.columns * samples * g.bits_allocated
    expected = math.ceil(g.frames * frame_bits / 8)
    if length == 0:
        raise PixelDataMismatch("The pixel data is empty.")
    if length < expected:
        raise PixelDataMismatch(f"The pixel data is truncated ({length} of {expected} bytes).")
    # Padding to an even length (and some writers' stray bytes) is harmless; a whole frame more
    # than the header counts means the header is not describing this data.
    if length >= math.ceil((g.frames + 1) * frame_bits / 8) and length - expected > 1:
        raise PixelDataMismatch(
            f"The pixel data holds more than the {g.frames} frame(s) the header says ({length} bytes for {expected})."
        )


def _check_fragments(ds: Any, g: PixelGeometry, value: bytes, ts: UID) -> None:
    try:
        offsets = parse_basic_offsets(value)
        start = 8 + 4 * len(offsets)
        count, _ = parse_fragments(value[start:])
    except Exception as exc:  # noqa: BLE001 - a malformed item structure
        raise PixelDataMismatch("The compressed pixel data is malformed (its fragments cannot be read).") from exc
    if offsets and len(offsets) != g.frames:
        raise PixelDataMismatch(f"The compressed pixel data's offset table lists {len(offsets)} frames; the header says {g.frames}.")
    extended = ds.get("ExtendedOffsetTable")
    if extended is not None and len(extended) // 8 != g.frames:
        raise PixelDataMismatch(f"The extended offset table lists {len(extended) // 8} frames; the header says {g.frames}.")
    if count < g.frames:
        raise PixelDataMismatch(f"The compressed pixel data has {count} fragment(s) for {g.frames} frame(s); frames are missing.")
    if ts == RLELossless and count != g.frames:
        # PS3.5 A.4.2: each RLE frame is exactly one fragment.
        raise PixelDataMismatch(f"The RLE pixel data holds {count} frames; the header says {g.frames}.")
    if count > g.frames:
        images = sum(1 for fragment in generate_fragments(value[start:]) if fragment.startswith(_IMAGE_STARTS))
        if images > g.frames:
            raise PixelDataMismatch(f"The compressed pixel data holds {images} images; the header says {g.frames}.")


# What plain_monochrome accepts: the header values pydicom's native decoder reads
# (pydicom/pixels/common.py, RunnerBase._validate_options), limited to the common kind.
_PLAIN_SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
_PLAIN_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
_PLAIN_BITS_ALLOCATED = (8, 16)
_MAX_DECODER_SIDE = 2**16 - 1  # pydicom refuses Rows or Columns above this
# Elements that change how a monochrome frame is mapped for display (render._to_8bit) in ways
# that can fail on bad values: a plain image has none of them.
_DISPLAY_LUTS = ("ModalityLUTSequence", "VOILUTSequence")


def plain_monochrome(ds: Any, g: PixelGeometry, *, max_frame_pixels: int) -> bool:
    """Whether the first frame of ``ds`` is certain to decode and map to 8 bits, from its header
    alone, so the import need not decode it to find out (docs/security.md §21 still applies:
    ``g`` passed :func:`check_pixel_data`, and the decoded size is checked here).

    True only for the plainest, commonest kind (a CT or MR slice): uncompressed little-endian
    ``PixelData`` holding the frames the header counts, MONOCHROME1/2, one sample, 8 or 16 bits
    allocated with Bits Stored within them, Pixel Representation 0 or 1, every one of these
    present as the number pydicom reads, no LUT sequences, a decoded size within
    :func:`max_decoded_bytes` and a frame within ``max_frame_pixels``. For such data pydicom's
    native decoder is a reshape of the bytes after the checks listed in
    ``RunnerBase._validate_options`` (each one met here), and rescale and window come from
    ``parse.viewer_info``, which keeps only finite numbers. Anything else (False) is decoded by
    the caller's check as before; tests/imaging/test_import_plain_pixels.py holds every file
    this says True for to the decode check's verdict."""
    try:
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        if ts not in _PLAIN_SYNTAXES or 0x7FE00010 not in ds or 0x7FE00008 in ds or 0x7FE00009 in ds:
            return False
        if ds.get("PhotometricInterpretation") not in _PLAIN_PHOTOMETRIC:
            return False
        values = [ds.get(k) for k in ("SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
                                      "Rows", "Columns")]
        if not all(type(v) is int for v in values):
            return False
        samples, bits_allocated, bits_stored, representation, rows, columns = values
        if "NumberOfFrames" in ds and _whole(ds, "NumberOfFrames", "Number of Frames") != g.frames:
            return False
        if any(keyword in ds for keyword in _DISPLAY_LUTS):
            return False
        check_decoded_size(ds)
    except Exception:  # noqa: BLE001 - any doubt: the caller decodes the frame to find out
        return False
    return (samples == g.samples == 1 and bits_allocated == g.bits_allocated in _PLAIN_BITS_ALLOCATED
            and 1 <= bits_stored <= bits_allocated and representation in (0, 1)
            and (rows, columns) == (g.rows, g.columns) and max(rows, columns) <= _MAX_DECODER_SIDE
            and rows * columns <= max_frame_pixels)


def check_codestreams(ds: Any, g: PixelGeometry) -> None:
    """:func:`check_codestream` for every frame of ``ds`` (read with its pixel data), one
    frame's compressed bytes in memory at a time. For a caller that decodes every frame."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if not _codestream_reader(ts) or "PixelData" not in ds:
        return
    offsets = ds.get("ExtendedOffsetTable"), ds.get("ExtendedOffsetTableLengths")
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=g.frames,
                                 extended_offsets=offsets if all(o is not None for o in offsets) else None)
        for data in frames:
            check_codestream(data, ts, g.rows, g.columns)
    except PixelLimitError:
        raise
    except Exception:  # noqa: BLE001 - frames pydicom cannot find are the decoder's to report
        return


def check_codestream(data: bytes, ts: str, rows: int, columns: int) -> None:
    """Refuse (:class:`PixelsTooLarge`) a JPEG, JPEG-LS or JPEG 2000 frame whose codestream
    claims more pixels than the DICOM header's ``rows`` x ``columns``. The decoders allocate what
    the codestream claims: pydicom's JPEG2000.dcm with its SIZ marker set to 30000 x 30000 made a
    check of one frame peak at 5.2 GB. A codestream this cannot read is left to the decoder."""
    reader = _codestream_reader(ts)
    if reader is None:
        return
    try:
        claimed_rows, claimed_cols = reader(data)
    except Exception:  # noqa: BLE001 - an unreadable codestream is the decoder's to report
        return
    if claimed_rows * claimed_cols > rows * columns:
        raise PixelsTooLarge(
            f"The compressed image claims to be {claimed_cols} x {claimed_rows} pixels, larger than "
            f"its DICOM header says; it was not decoded.",
            decoded_bytes=claimed_rows * claimed_cols, limit=rows * columns,
        )


def codestream_checked(ts: str) -> bool:
    """Whether :func:`check_codestream` reads frames of this transfer syntax (JPEG family)."""
    return _codestream_reader(ts) is not None


def _codestream_reader(ts: str) -> Any:
    if ts in JPEG2000TransferSyntaxes:
        return _j2k_size
    if ts in JPEGTransferSyntaxes or ts in JPEGLSTransferSyntaxes:
        return _jpeg_size
    return None


def _j2k_size(codestream: bytes) -> tuple[int, int]:
    """(rows, columns) from the SIZ marker segment (ISO/IEC 15444-1 A.5.1), which must follow
    SOC, inside a JP2 wrapper's ``jp2c`` box if there is one.

    Hand-written because the maintained reader allocates for the claim: pylibjpeg-openjpeg's
    ``get_parameters`` peaked at 208 MB for 65535 x 65535 and 416 MB for 100000 x 100000
    (measured here), which is the attack this check exists to stop. pydicom's
    ``get_j2k_parameters`` walks the same boxes but returns no size. Tested against
    pylibjpeg-openjpeg on real files (tests/imaging/test_render.py)."""
    offset = 0
    if codestream.startswith(b"\x00\x00\x00\x0cjP  "):  # JP2 signature box
        offset = 12
        while True:
            length, box = struct.unpack_from(">I4s", codestream, offset)
            header = 8
            if length == 1:  # the real length follows as 64 bits
                (length,) = struct.unpack_from(">Q", codestream, offset + 8)
                header = 16
            if box == b"jp2c":
                offset += header
                break
            if length < header:
                raise ValueError("JP2 box without a usable length")
            offset += length
    if codestream[offset : offset + 4] != b"\xff\x4f\xff\x51":  # SOC then SIZ
        raise ValueError("no SIZ marker segment after SOC")
    width, height, x_offset, y_offset = struct.unpack_from(">IIII", codestream, offset + 8)
    if width <= x_offset or height <= y_offset:
        raise ValueError("empty image area")
    return height - y_offset, width - x_offset


def _jpeg_size(codestream: bytes) -> tuple[int, int]:
    # Not pylibjpeg-libjpeg's get_parameters: it peaked at 13.8 GB reading a 60000 x 60000
    # claim. pydicom's own SOF reader walks the marker segments in Python and allocates nothing
    # (private in pydicom 3.0, which is pinned; if it moves, the check is skipped, not wrong).
    from pydicom.pixels.utils import _get_jpg_parameters

    params = _get_jpg_parameters(codestream)
    return int(params["height"]), int(params["width"])


def check_inflated_size(stream: IO[bytes], *, limit: int | None = None) -> None:
    """If the Part 10 file in ``stream`` is a deflated dataset, inflate it a chunk at a time,
    keeping nothing, and raise :class:`PixelsTooLarge` once it passes ``limit`` (default
    :func:`max_decoded_bytes`). pydicom inflates a deflated dataset whole while reading it
    (``zlib.decompress`` of the rest of the file), so a 64 MB upload could become 60 GB; this runs
    first. Leaves ``stream`` at its start; anything it cannot read is left to the reader."""
    limit = max_decoded_bytes() if limit is None else limit
    try:
        stream.seek(0)
        read_preamble(stream, True)
        meta = read_dataset(stream, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag >> 16 != 2)
        ts = str(meta.get("TransferSyntaxUID", "") or "").strip()
        if ts != DeflatedExplicitVRLittleEndian:
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not inflater.eof and (data := stream.read(_INFLATE_CHUNK)):
            while data and not inflater.eof:
                out = inflater.decompress(data, _INFLATE_CHUNK)
                total += len(out)
                if total > limit:
                    raise PixelsTooLarge(
                        f"The compressed (deflated) file inflates to more than {megabytes(limit)}, the most "
                        "allowed; it was not read.", decoded_bytes=total, limit=limit,
                    )
                if not out and inflater.unconsumed_tail == data:
                    return  # no progress: damaged data, which the reader refuses with its own reason
                data = inflater.unconsumed_tail
    except PixelLimitError:
        raise
    except Exception:  # noqa: BLE001 - a damaged file is refused by the reader with its own reason
        return
    finally:
        stream.seek(0)


def _whole(ds: Any, keyword: str, label: str, *, default: int | None = None, zero: int | None = None) -> int:
    """A header value that must be one whole number from 1 to 2^31 - 1."""
    try:
        value = ds.get(keyword) if keyword in ds else None
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily: a bad one raises here
        raise InvalidPixelHeader(f"Invalid image size: {label} cannot be read.") from exc
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str):
        value = value.strip().rstrip("\x00").strip()
    if value is None or value == "":
        if default is not None:
            return default
        raise InvalidPixelHeader(f"Invalid image size: the header has no {label}.")
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _WHOLE_RE.fullmatch(value):
        number = int(value)
    if number is None:
        shown = "".join(ch for ch in str(value)[:24] if ch.isprintable())
        raise InvalidPixelHeader(f"Invalid image size: {label} is not a whole number ({shown!r}).")
    if number == 0 and zero is not None:
        return zero
    if not 1 <= number <= _MAX_COUNT:
        raise InvalidPixelHeader(f"Invalid image size: {label} is {number}.")
    return number

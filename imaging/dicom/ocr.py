"""Text burned into pixels, read by OCR (Debian's ``tesseract-ocr`` through ``pytesseract``).

The only module in Lightbox that calls pytesseract. Called by :mod:`imaging.pixel_text` (which
caches one :class:`OcrResult` per instance in ``imaging.models.PixelText``) and by tests and
benchmarks; never by views. Nothing here logs, and nothing here knows about users: the callers
have already narrowed to one patient's files, and their services record the access.

How a file is read
  Every frame of every image is read, whatever ``BurnedInAnnotation`` says. Frames are decoded
  ONE AT A TIME (``pydicom.pixels.iter_pixels`` from the open file, after the size check of
  docs/security.md §21), put on the viewer's 8-bit scale (``render._to_8bit``: Modality LUT, window or
  min-max, palette and YBR to RGB, MONOCHROME1 inverted), colour reduced to its brightest
  channel (overlay text is usually a saturated colour: pure blue text on black has a luminance
  of 29 of 255 but a brightest channel of 255), flipped so the background is light (Tesseract
  is trained on dark print on paper), and frames under 512 pixels upscaled by a whole factor
  (text on a 256-pixel ultrasound is 6-8 pixels tall; Tesseract wants 20 or more).

  Prepared frames are stacked into a "strip" (a white page, frames one under another with white
  gutters) of at most :data:`STRIP_MAX_FRAMES` frames and :data:`STRIP_MAX_PIXELS`, and
  Tesseract reads the strip once, while the next frames are decoded (10 ms a CT slice); up to
  :data:`PARALLEL_CALLS` strips can be read at once (one, see there). Boxes are mapped back to
  each frame's own coordinates. Memory is one decoded frame plus at most PARALLEL_CALLS + 1
  strips of 8-bit pixels (2 MB each, unless one frame alone is larger), whatever the study's
  size.

  Tesseract runs with page segmentation mode 11 (sparse text: overlays are scattered words, not
  paragraphs), Leptonica's adaptive Otsu threshold (``thresholding_method=1``: the default global
  Otsu missed a name on one CT slice among 16 in a strip, the adaptive one found it), no
  second inverted pass (``tessedit_do_invert=0``: the frame is already light-backed) and
  ``OMP_THREAD_LIMIT=1`` (OpenMP on a two-core worker made each call 4-7 times slower).

Measured (``benchmarks/ocr_frames.py`` on the shared 2-core machine, tesseract 5.3.0, four runs
at load 1.4-4.5 from other work; the spread is that load)
  - 512x512 CT slice (generated series, no text): 170-260 ms read alone, nearly all of it
    Tesseract starting and loading its model; 60-90 ms a slice in strips of 4 at load 1.6 and
    120-160 ms at load 2-3.5, so a 300-slice CT takes 20-50 s. No slice of 60 was reported as
    holding text.
  - 640x480 RGB ultrasound frame (pydicom-data's ``US1_UNCR.dcm``, with its scanner's real
    overlay): 400-730 ms alone; 270-670 ms a frame in a 30-frame file. Text found on 30 of 30.
  - Two Tesseract runs at once against one: not faster here (see :data:`PARALLEL_CALLS`).

  A cheap pre-check was measured and rejected: marking "stroke" pixels (a pixel 80 levels
  brighter than its 5x5 neighbourhood's minimum, PIL's MinFilter) costs 20-65 ms per 512x512
  frame, a third to all of reading that frame in a strip, and every generated CT slice has
  over 7,000 of them (vessels, ribs and the body's edge are thin bright strokes too; the
  ultrasound with its overlay has 12,500), so it would skip nothing. Only frames of a single
  grey level (blank padding frames, which cannot show text) are skipped without reading.

Matching
  Words Tesseract reads are grouped into regions (words on one line, close together), and each
  region is compared with the file's own identifiers (:func:`identifiers_from_header`, as
  Presidio's DICOM image redactor seeds its search with the header's values), after
  normalising case, accents, punctuation and spaces; digit-like letters are folded (O->0, I->1,
  S->5...) when comparing identifiers with digits. A region that matches gets the identifier's
  kind whatever Tesseract's confidence (it read ``DOE^JANE`` on a CT slice as two words at
  confidence 0); other text counts only when Tesseract is confident, as kind ``"text"``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import shutil
import threading
import unicodedata
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import IO, Any

# OpenMP in Tesseract on a two-core worker: 2.1-3.6 s for one 640x480 frame with it, 0.35-0.5 s
# without (measured). pytesseract starts Tesseract with this process's environment; an operator
# who sets the variable keeps their value.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import numpy as np  # noqa: E402 - after the environment above, like every import below
import pydicom  # noqa: E402
import pytesseract  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.pixels import iter_pixels  # noqa: E402

from imaging.dicom import limits, render  # noqa: E402

NOT_INSTALLED = "OCR is not installed on this server."

# Upscale frames whose longer side is under this many pixels by a whole factor (at most 4):
# text on a 256-pixel ultrasound is 6-8 pixels tall and Tesseract reads it reliably from 2x.
UPSCALE_BELOW = 512
MAX_UPSCALE = 4
# One Tesseract call reads at most this many frames / pixels: its start-up (100-250 ms) is
# shared by the frames. Measured with 1-16 frames a call (benchmarks/ocr_frames.py): a CT slice
# costs 180 ms alone, 60-90 ms in a strip of 4 and 60 ms in a strip of 16, but ultrasound frames
# (speckle read as many short words) cost 300 ms a frame in strips of 4 and 600-700 ms in
# strips of 16, where Tesseract also found fewer of their words (109 regions against 122 on 12
# frames). Four frames and 2 Mpx (2 MB of 8-bit pixels) is the compromise; memory stays flat.
STRIP_MAX_FRAMES = 4
STRIP_MAX_PIXELS = 2 * 1024 * 1024
# Tesseract runs under way at once (each is one process on one core, OMP_THREAD_LIMIT=1). Two
# were measured no faster on the shared two-core machine (92 against 93 ms a CT slice at load
# 2.6, 213 against 153 at load 4.5): its cores were busy with other work. A worker with idle
# cores may gain from 2; run benchmarks/ocr_frames.py there before raising it.
PARALLEL_CALLS = 1
# White space between frames in a strip, so no line of text can join two frames.
_GUTTER = 24
# A frame read alone takes under 0.5 s; 20 s a frame (plus 10 s to start) means Tesseract is
# stuck on a pathological image, and the file is reported "not checked" instead of blocking a
# de-identified export for ever.
SECONDS_PER_FRAME = 20
_SECONDS_PER_CALL = 10
# Frames larger than the viewer will render are not read either: one such frame decoded and
# upscaled would not fit the strip's memory bound.
MAX_OCR_FRAME_PIXELS = render.MAX_RENDER_PIXELS
# When text that matches no identifier still counts (Tesseract's confidence is 0-100): below
# these, it "reads" speckle and anatomy as short words ("ine", "pill", "Nel" at 45-65 on MR, CT
# and radiographs among pydicom's images), while real overlay words of five or more characters
# came in as low as 41 ("MSCSKEL" on US1_UNCR.dcm). Short words need more confidence, and a
# capital or a digit: the false words that remained at 70+ were lower case ("pill" on a
# generated CT slice, "ine" on MR2_UNCI.dcm, "tat" on emri_small_big_endian.dcm), while overlay
# labels are capitals and digits ("PWR", "CINE", "Gen", "28Hz").
MIN_CONFIDENCE_LONG = 40
MIN_CONFIDENCE_SHORT = 70
LONG_WORD = 5
MIN_TEXT_CHARS = 3
# Word boxes are widened by this fraction of their height (at least 2 pixels) before masking:
# Tesseract's boxes are tight around the ink, and anti-aliased edges lie just outside them.
_MARGIN = 0.25

KINDS = ("name", "patient_id", "accession", "birth_date", "date", "institution")
_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Letters OCR mistakes for digits (and the reverse), folded before comparing identifiers that
# contain digits: "44CG43" can be "446643".
_DIGIT_FOLD = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "T": "7", "S": "5",
                             "B": "8", "Z": "2", "G": "6"})

_lock = threading.Lock()
_frames_read = 0


@dataclass
class OcrResult:
    """What OCR found in one file. ``regions`` are in the frame's own pixel coordinates."""

    status: str  # "found" | "none" | "not_checked"
    engine: str = ""
    frames_checked: int = 0
    regions: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    reason: str = ""


Source = str | os.PathLike[str] | IO[bytes] | Callable[[], IO[bytes]]


def frames_read() -> int:
    """How many frames this process has handed to Tesseract (tests check caching with it)."""
    return _frames_read


def available(tesseract_cmd: str | None = None) -> tuple[bool, str]:
    """Whether Tesseract can be run: ``(True, "tesseract 5.3.0")`` or ``(False, reason)``."""
    cmd = tesseract_cmd or "tesseract"
    path = shutil.which(cmd)
    if path is None:
        return False, NOT_INSTALLED
    return _version(path)


@functools.lru_cache(maxsize=8)
def _version(path: str) -> tuple[bool, str]:
    # Cached per executable: asking costs a process start (10-30 ms) per file otherwise. Removal
    # is still noticed, by shutil.which above.
    with _lock:
        pytesseract.pytesseract.tesseract_cmd = path
        try:
            version = pytesseract.get_tesseract_version()
        except (pytesseract.TesseractNotFoundError, OSError, SystemExit):
            # pytesseract raises SystemExit for a version it does not recognise.
            return False, NOT_INSTALLED
    return True, f"tesseract {version}"


def _ocr_page(page: Image.Image, cmd: str, timeout: float, frames: int) -> dict[str, list[Any]]:
    """One Tesseract run over one strip (called in the strip's helper threads)."""
    global _frames_read  # noqa: PLW0603 - read back by frames_read()
    with _lock:
        # pytesseract keeps the command in a module global, read when the process starts. One
        # deployment has one command, so calls running at once never need different ones.
        pytesseract.pytesseract.tesseract_cmd = cmd
        _frames_read += frames
    return pytesseract.image_to_data(
        page, config="--psm 11 -c thresholding_method=1 -c tessedit_do_invert=0",
        timeout=timeout, output_type=pytesseract.Output.DICT,
    )


# --- Identifiers from the header ---------------------------------------------------------


def identifiers_from_header(ds_or_path: Any) -> dict[str, list[str]]:
    """The file's own identifiers, by kind, as they might be printed on the image.

    Kinds: ``name`` (parts of every person name in the file), ``patient_id`` (Patient ID and
    Other Patient IDs), ``accession``, ``birth_date`` and ``date`` (study, series, acquisition
    and content dates, each in the common printed forms), ``institution`` (the name and its
    words). ``ds_or_path`` is a pydicom dataset or a path or binary stream of a DICOM file.
    """
    ds = ds_or_path if isinstance(ds_or_path, pydicom.Dataset) else _read_header(ds_or_path)
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}

    def add(kind: str, value: Any) -> None:
        text = str(value or "").strip()
        if text and text not in found[kind]:
            found[kind].append(text)

    for element in ds.iterall():
        try:
            if element.VR != "PN" or element.value in (None, ""):
                continue
            values = element.value if element.VM > 1 else [element.value]
        except Exception:  # noqa: BLE001, S112 - a value pydicom cannot convert names no one we can match
            continue
        for name in values:
            for part in re.split(r"[\^=\s,]+", str(name)):
                if len(_norm(part)) >= 2:
                    add("name", part)
    add("patient_id", ds.get("PatientID"))
    others = ds.get("OtherPatientIDs") or []
    for value in [others] if isinstance(others, str) else others:
        add("patient_id", value)
    for item in ds.get("OtherPatientIDsSequence") or []:
        add("patient_id", item.get("PatientID"))
    add("accession", ds.get("AccessionNumber"))
    for value in _date_forms(ds.get("PatientBirthDate")):
        add("birth_date", value)
    for keyword in _DATE_KEYWORDS:
        for value in _date_forms(ds.get(keyword)):
            add("date", value)
    institution = str(ds.get("InstitutionName") or "").strip()
    if institution:
        add("institution", institution)
        for word in re.split(r"\W+", institution):
            if len(_norm(word)) >= 3:
                add("institution", word)
    return {kind: values for kind, values in found.items() if values}


def _date_forms(value: Any) -> list[str]:
    """A DICOM DA value in the forms scanners print (ISO, day first, month first, month names)."""
    text = str(value or "").strip()
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return []
    y, m, d = day.year, day.month, day.day
    mon = day.strftime("%b").upper()  # C locale: English month abbreviations, as scanners print
    yy = f"{y % 100:02d}"
    forms = [
        f"{y:04d}{m:02d}{d:02d}", f"{y:04d}-{m:02d}-{d:02d}", f"{y:04d}/{m:02d}/{d:02d}", f"{y:04d}.{m:02d}.{d:02d}",
        f"{d:02d}/{m:02d}/{y:04d}", f"{d:02d}.{m:02d}.{y:04d}", f"{d:02d}-{m:02d}-{y:04d}",
        f"{m:02d}/{d:02d}/{y:04d}", f"{m:02d}-{d:02d}-{y:04d}",
        f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d:02d}/{m:02d}/{yy}", f"{m:02d}/{d:02d}/{yy}",
        f"{d:02d}-{mon}-{y:04d}", f"{d} {mon} {y:04d}", f"{mon} {d} {y:04d}", f"{d:02d}{mon}{y:04d}",
        f"{d:02d}-{mon}-{yy}",
    ]
    return list(dict.fromkeys(forms))


# --- Reading files -------------------------------------------------------------------------


def read_instance(source: Source, *, identifiers: dict[str, list[str]] | None = None,
                  max_frames: int | None = None, tesseract_cmd: str | None = None) -> OcrResult:
    """Read one DICOM file's pixels for text. ``source`` is a path, a seekable binary stream or
    a function that opens one (it is then closed here). ``identifiers`` default to the file's
    own header; ``max_frames`` reads only the first frames (the result then says so)."""
    return read_instances([source], identifiers=[identifiers] if identifiers is not None else None,
                          max_frames=max_frames, tesseract_cmd=tesseract_cmd)[0]


def read_instances(sources: Sequence[Source], *, identifiers: Sequence[dict[str, list[str]] | None] | None = None,
                   max_frames: int | None = None, tesseract_cmd: str | None = None) -> list[OcrResult]:
    """:func:`read_instance` for several files, one result each, in order. Frames of several
    files share Tesseract calls (a CT series is read 4 slices a call); files are opened one at
    a time and each is closed before the next is opened."""
    ok, engine = available(tesseract_cmd)
    if not ok:
        return [OcrResult(status="not_checked", reason=engine) for _ in sources]
    pending = [_Pending() for _ in sources]
    with _Strip(tesseract_cmd or "tesseract", pending) as strip:
        _read_all(sources, identifiers, max_frames, pending, strip)
    return [state.result(engine) for state in pending]


def _read_all(sources: Sequence[Source], identifiers: Sequence[dict[str, list[str]] | None] | None,
              max_frames: int | None, pending: list[_Pending], strip: _Strip) -> None:
    for index, source in enumerate(sources):
        state = pending[index]
        given = identifiers[index] if identifiers is not None else None
        with warnings.catch_warnings():
            # pydicom warns about odd values on real-world files; what we report is the reason.
            warnings.simplefilter("ignore")
            try:
                with _opened(source) as stream:
                    _read_frames(stream, index, state, given, max_frames, strip)
            except _Unreadable as exc:
                state.reason = str(exc)
            except OSError:
                state.reason = "The file cannot be opened."
            except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything on bad data
                state.reason = f"The image data cannot be decoded ({type(exc).__name__})."


class _Unreadable(Exception):
    """The file cannot be checked; the message is the plain reason."""


@contextmanager
def _opened(source: Source) -> Iterator[IO[bytes]]:
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source), "rb") as fh:
            yield fh
    elif callable(source) and not hasattr(source, "read"):
        with source() as fh:
            yield fh
    else:
        yield source  # type: ignore[misc] - a stream the caller owns


def _read_header(source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        return pydicom.dcmread(source, force=False, stop_before_pixels=True)
    return render.read_header(source)


def _read_frames(stream: IO[bytes], index: int, state: _Pending, given: dict[str, list[str]] | None,
                 max_frames: int | None, strip: _Strip) -> None:
    try:
        header = render.read_header(stream)
    except Exception as exc:  # noqa: BLE001 - hostile files raise many types
        raise _Unreadable("The file cannot be read as DICOM.") from exc
    state.identifiers = given if given is not None else identifiers_from_header(header)
    # read_header stops before the pixels: whether the file has them is asked of the raw file.
    stream.seek(0)
    full = None
    ts = str(header.file_meta.get("TransferSyntaxUID", ""))
    if ts == _DEFLATED:
        # A deflated dataset must be inflated as a whole before its pixel data can be found.
        full = pydicom.dcmread(stream, force=False)
        has_pixels = any(tag in full for tag in _PIXEL_KEYWORDS)
    else:
        # defer_size: element values past 1 KB are skipped, not read (the pixels stay on disk).
        probe = pydicom.dcmread(stream, force=False, defer_size=1024)
        has_pixels = any(tag in probe for tag in _PIXEL_KEYWORDS)
    stream.seek(0)
    if not has_pixels or not header.get("Rows") or not header.get("Columns"):
        raise _Unreadable("The file holds no image (no pixel data).")
    # docs/security.md §21: the decoded size is checked against the header before anything is
    # decoded, with the limit every decoder's caller uses (a lying header cannot make us allocate more).
    try:
        frames, rows, cols, _samples = limits.check_decoded_size(header).shape
    except limits.PixelLimitError as exc:
        raise _Unreadable(f"{exc.reason} It was not read for text.") from exc
    if rows * cols > MAX_OCR_FRAME_PIXELS:
        raise _Unreadable("The image is too large to read for text.")
    wanted = frames if max_frames is None else max(0, min(frames, max_frames))
    state.frames_total = frames
    state.size = (cols, rows)
    for frame, arr in enumerate(_frames(stream, full, wanted)):
        pixels = render._to_8bit(arr, header, frame, None, None)  # noqa: SLF001 - the viewer's own scale
        state.frames_checked += 1
        gray = pixels.max(axis=2) if pixels.ndim == 3 else pixels
        if int(gray.min()) == int(gray.max()):
            continue  # one flat grey level: nothing can be written on it
        strip.add(index, frame, gray)


def _frames(stream: IO[bytes], full: Any, wanted: int) -> Iterator[np.ndarray]:
    """Frames one at a time from the open file; from the whole dataset only when the file's
    lean reader refuses it before the first frame (as ``render._decode`` does: e.g. pydicom's
    ``SC_rgb_jpeg.dcm``, whose offset table the lean reader rejects)."""
    if full is None:
        yielded = False
        try:
            for arr in iter_pixels(stream, indices=range(wanted)):
                yielded = True
                yield arr
            return
        except Exception:
            if yielded:
                raise
        stream.seek(0)
        full = pydicom.dcmread(stream, force=False)
    yield from iter_pixels(full, indices=range(wanted))


# --- Strips: several frames, one Tesseract call --------------------------------------------


@dataclass
class _Placed:
    owner: int
    frame: int
    scale: int
    top: int
    width: int
    height: int


@dataclass
class _Word:
    frame: int
    box: tuple[int, int, int, int]  # x, y, w, h in the frame's coordinates
    text: str
    conf: float


@dataclass
class _Pending:
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    words: list[_Word] = field(default_factory=list)
    frames_checked: int = 0
    frames_total: int = 0
    size: tuple[int, int] = (0, 0)  # columns, rows: masks end at the frame's edge
    reason: str = ""

    def result(self, engine: str) -> OcrResult:
        regions = _regions(self.words, self.identifiers, self.size)
        kinds = sorted({kind for region in regions for kind in region["kinds"]})
        partial = self.frames_total and self.frames_checked < self.frames_total
        reason = self.reason or (
            f"Only {self.frames_checked} of {self.frames_total} frames were read." if partial else ""
        )
        if reason:
            status = "not_checked"
        else:
            status = "found" if regions else "none"
        return OcrResult(status=status, engine=engine, frames_checked=self.frames_checked,
                         regions=regions, kinds=kinds, reason=reason)


class _Strip:
    """Frames waiting for Tesseract, and the Tesseract runs under way (at most
    :data:`PARALLEL_CALLS` at once; words are handed to their files in this thread)."""

    def __init__(self, cmd: str, pending: list[_Pending]) -> None:
        self.cmd = cmd
        self.pending = pending
        self.images: list[Image.Image] = []
        self.placed: list[_Placed] = []
        self.height = _GUTTER
        self.width = 0
        self.pool = ThreadPoolExecutor(max_workers=PARALLEL_CALLS, thread_name_prefix="ocr")
        self.running: deque[tuple[Future, list[_Placed]]] = deque()

    def __enter__(self) -> _Strip:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
                while self.running:
                    self._collect()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, owner: int, frame: int, gray: np.ndarray) -> None:
        rows, cols = gray.shape
        scale = min(MAX_UPSCALE, -(-UPSCALE_BELOW // max(rows, cols))) if max(rows, cols) < UPSCALE_BELOW else 1
        image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), "L")
        if np.median(gray) < 128:
            # A dark background (almost every overlay): make it light, with dark text.
            image = Image.eval(image, lambda v: 255 - v)
        if scale > 1:
            image = image.resize((cols * scale, rows * scale), Image.Resampling.BICUBIC)
        w, h = image.size
        new_width = max(self.width, w + 2 * _GUTTER)
        if self.images and (len(self.images) >= STRIP_MAX_FRAMES
                            or new_width * (self.height + h + _GUTTER) > STRIP_MAX_PIXELS):
            self.flush()
            new_width = w + 2 * _GUTTER
        self.images.append(image)
        self.placed.append(_Placed(owner, frame, scale, self.height, w, h))
        self.height += h + _GUTTER
        self.width = new_width

    def flush(self) -> None:
        """Start Tesseract on the frames waiting; wait for the oldest run if enough are under way
        (so at most PARALLEL_CALLS + 1 strips are in memory)."""
        if not self.images:
            return
        page = Image.new("L", (self.width, self.height), 255)
        for image, placed in zip(self.images, self.placed, strict=True):
            page.paste(image, (_GUTTER, placed.top))
        placed_list, self.placed, self.images = self.placed, [], []
        self.height, self.width = _GUTTER, 0
        timeout = _SECONDS_PER_CALL + SECONDS_PER_FRAME * len(placed_list)
        future = self.pool.submit(_ocr_page, page, self.cmd, timeout, len(placed_list))
        self.running.append((future, placed_list))
        while len(self.running) > PARALLEL_CALLS:
            self._collect()

    def _collect(self) -> None:
        future, placed_list = self.running.popleft()
        try:
            data = future.result()
        except RuntimeError:  # pytesseract's "Tesseract process timeout"
            self._fail(placed_list, "Reading the image for text took too long.")
            return
        except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, OSError):
            self._fail(placed_list, "The OCR engine failed on this image.")
            return
        self._distribute(data, placed_list)

    def _fail(self, placed_list: list[_Placed], reason: str) -> None:
        for placed in placed_list:
            state = self.pending[placed.owner]
            state.reason = state.reason or reason

    def _distribute(self, data: dict[str, list[Any]], placed_list: list[_Placed]) -> None:
        for i, raw in enumerate(data["text"]):
            text = str(raw).strip()
            if not text:
                continue
            left, top, width, height = (int(data[k][i]) for k in ("left", "top", "width", "height"))
            middle = top + height / 2
            placed = next((p for p in placed_list if p.top <= middle < p.top + p.height), None)
            if placed is None:
                continue  # in a gutter: cannot belong to a frame
            s = placed.scale
            x0, y0 = max(left - _GUTTER, 0) // s, max(top - placed.top, 0) // s
            x1 = min(-(-(left + width - _GUTTER) // s), placed.width // s)
            y1 = min(-(-(top + height - placed.top) // s), placed.height // s)
            if x1 <= x0 or y1 <= y0:
                continue
            self.pending[placed.owner].words.append(
                _Word(placed.frame, (x0, y0, x1 - x0, y1 - y0), text, float(data["conf"][i]))
            )


# --- Regions and matching ------------------------------------------------------------------


def _norm(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^0-9A-Z]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).upper())


def _matches(kind: str, values: list[str], tokens: list[str], joined: str) -> bool:
    for value in values:
        v = _norm(value)
        if len(v) < 2:
            continue  # a one-character ID or accession ("7") would match any lone digit
        if kind in ("name", "institution"):
            if v in tokens or (len(v) >= 4 and v in joined):
                return True
            # One misread letter in a longer name still names the patient.
            if len(v) >= 5 and any(len(t) >= 4 and SequenceMatcher(None, v, t).ratio() >= 0.8 for t in tokens):
                return True
        else:
            if len(v) < 4:
                if v in tokens:
                    return True
                continue
            if v in joined or v.translate(_DIGIT_FOLD) in joined.translate(_DIGIT_FOLD):
                return True
    return False


def _counts_as_text(word: _Word) -> bool:
    alnum = sum(c.isalnum() for c in word.text)
    if alnum >= LONG_WORD:
        return word.conf >= MIN_CONFIDENCE_LONG
    capital_or_digit = any(c.isupper() or c.isdigit() for c in word.text)
    return alnum >= MIN_TEXT_CHARS and capital_or_digit and word.conf >= MIN_CONFIDENCE_SHORT


def _regions(words: list[_Word], identifiers: dict[str, list[str]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """Group words into lines (same frame, overlapping vertically, close horizontally), match
    each line against the identifiers, and keep lines that match or hold confident text."""
    regions: list[dict[str, Any]] = []
    by_frame: dict[int, list[_Word]] = {}
    for word in words:
        by_frame.setdefault(word.frame, []).append(word)
    for frame in sorted(by_frame):
        for group in _lines(by_frame[frame]):
            tokens = [_norm(w.text) for w in group]
            joined = "".join(tokens)
            kinds = [kind for kind, values in identifiers.items() if _matches(kind, values, tokens, joined)]
            if kinds:
                kept = group
            else:
                kept = [w for w in group if _counts_as_text(w)]
                if not kept:
                    continue
                kinds = ["text"]
            regions.append({"frame": frame, "box": _union([w.box for w in kept], margin=size),
                            "text": " ".join(w.text for w in kept), "kinds": sorted(kinds)})
    return sorted(regions, key=lambda r: (r["frame"], r["box"][1], r["box"][0]))


def _lines(words: list[_Word]) -> list[list[_Word]]:
    """Words chained along a line: each overlaps a neighbour in the group vertically by half its
    height, with a gap of at most 1.5 heights (a space, not a column of an overlay)."""
    words = sorted(words, key=lambda w: (w.box[0], w.box[1]))
    groups: list[list[_Word]] = []
    for word in words:
        for group in groups:
            if any(_neighbours(word.box, other.box) for other in group):
                group.append(word)
                break
        else:
            groups.append([word])
    return groups


def _neighbours(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap = min(ay + ah, by + bh) - max(ay, by)
    gap = max(ax - (bx + bw), bx - (ax + aw), 0)
    return overlap >= 0.5 * min(ah, bh) and gap <= 1.5 * max(ah, bh)


def _union(boxes: Iterable[tuple[int, int, int, int]], margin: tuple[int, int] | None = None) -> list[int]:
    boxes = list(boxes)
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    if margin:
        pad = max(2, round(_MARGIN * max(b[3] for b in boxes)))
        x0, y0, x1, y1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, margin[0]), min(y1 + pad, margin[1])
    return [x0, y0, x1 - x0, y1 - y0]

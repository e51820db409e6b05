"""Per-frame OCR time (``imaging.dicom.ocr``): 512x512 CT slices and 640x480 ultrasound frames.

    .venv/bin/python benchmarks/ocr_frames.py [--slices 32] [--frames 30]

Each case is read file by file (``read_instance``: one Tesseract call per file, as a single
image is read) and as one batch (``read_instances``: frames share calls in strips of up to 4),
the batch once with one Tesseract run at a time and once with two (``ocr.PARALLEL_CALLS``; a
gain needs idle cores, so run it on a quiet machine).
The CT is the benchmarks' generated series (``_common.write_ct``, no text in its pixels); the
ultrasound is pydicom-data's ``US1_UNCR.dcm`` (a real 640x480 RGB frame with its scanner's
overlay text), once as a single frame and once repeated into a multi-frame file. Prints the
median and total per frame, and how many files OCR reported as holding text (the CT should
have none, the ultrasound all).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, write_ct  # noqa: E402

sys.path.insert(0, str(ROOT))


def _us_source() -> Path:
    import pydicom.data

    # pydicom-data's store, as installed (never downloaded).
    return Path(pydicom.data.get_testdata_file("US1_UNCR.dcm", download=False) or "")


def _multiframe(source: Path, target: Path, frames: int) -> Path:
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(source)
    arr = ds.pixel_array
    rng = np.random.default_rng(0)
    stack = [np.clip(arr.astype(np.int16) + rng.integers(-8, 9, arr.shape), 0, 255).astype(np.uint8)
             for _ in range(frames)]
    ds.NumberOfFrames = frames
    ds.PixelData = np.stack(stack).tobytes()
    ds.save_as(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()

    from imaging.dicom import ocr

    ok, engine = ocr.available()
    if not ok:
        sys.exit(engine)
    print(f"engine: {engine}")
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        tmp_path = Path(tmp)
        ct = write_ct(tmp_path / "ct", slices=args.slices)
        us = _us_source()
        cine = _multiframe(us, tmp_path / "us_cine.dcm", args.frames)

        singles = []
        found = 0
        for path in ct:
            t0 = time.perf_counter()
            result = ocr.read_instance(path)
            singles.append(time.perf_counter() - t0)
            found += result.status == "found"
        print(f"CT 512x512, one file a call: median {statistics.median(singles) * 1000:.0f} ms/slice, "
              f"{len(ct)} slices, {found} reported with text")

        default = ocr.PARALLEL_CALLS
        for parallel in (1, 2):
            ocr.PARALLEL_CALLS = parallel
            t0 = time.perf_counter()
            results = ocr.read_instances(ct)
            total = time.perf_counter() - t0
            found = sum(r.status == "found" for r in results)
            print(f"CT 512x512, batched, {parallel} Tesseract run(s) at once: {total / len(ct) * 1000:.0f} ms/slice "
                  f"({total:.1f} s for {len(ct)}; 300 slices ~ {total / len(ct) * 300:.0f} s), {found} reported with text")
        ocr.PARALLEL_CALLS = default

        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            result = ocr.read_instance(us)
            times.append(time.perf_counter() - t0)
        print(f"US 640x480 RGB, one frame: median {statistics.median(times) * 1000:.0f} ms, "
              f"status {result.status}, kinds {result.kinds}")

        t0 = time.perf_counter()
        result = ocr.read_instance(cine)
        total = time.perf_counter() - t0
        frames_with_text = len({r["frame"] for r in result.regions})
        print(f"US 640x480 RGB, {args.frames}-frame file: {total / args.frames * 1000:.0f} ms/frame "
              f"({total:.1f} s), text on {frames_with_text} of {result.frames_checked} frames")


if __name__ == "__main__":
    main()

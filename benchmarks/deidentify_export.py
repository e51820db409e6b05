"""De-identified copies: what OCR and the PS3.15 de-identifier cost, and memory by study size.

    .venv/bin/python benchmarks/deidentify_export.py [--runs 3] [--slices 300] [--frames 30]
        [--memory-sizes 150,1500] [--memory-ocr off|on] [--memory-runs 1] [--skip-memory]

Time: a generated 300-slice 512x512 CT (``_common.write_ct``) and a generated 30-frame 640x480
RGB ultrasound whose pixels show the patient's name, ID and exam date (``_common.write_ultrasound``;
its header says the same and ``BurnedInAnnotation = NO``) are imported with ``dicom_import`` on a
throwaway SQLite data dir, then each is packaged by ``exports.packaging.build_archive`` four ways,
in this order within every round, ``--runs`` rounds after one warm-up round (original and
de-identified without OCR, so first-use imports are not timed):

- original: the patient's own copy;
- de-identified, OCR cold: the OCR cache (``PixelText``) emptied first, so every image is read;
- de-identified, OCR warm: the cache filled by the cold run, so nothing is read again (masking
  still happens);
- de-identified, no OCR: ``ocr=False`` (every image listed as not checked);
- study OCR'd, then warm: the cache emptied, the study read by ``imaging.pixel_text.pixel_text_for_study``
  (which batches frames of several instances into one Tesseract call), then packaged as "warm";
  the sum is timed: what packaging would take if it read the study that way instead of one
  instance at a time.

Prints medians and ranges, the ratios to the original and OCR's share of a de-identified export,
``(with OCR - without) / with``, and how many images the cold run masked.

Memory: for a ~150 MB and a ~1.5 GB study (``export_memory.write_study``: 1024x1024 CT slices of
2 MB), each size in a process of its own on its own data dir, packaged de-identified
``--memory-runs`` times, each in a fresh process that has first loaded what a worker loads
(``_common.package_in_fresh_process``: peak RSS as ``VmHWM`` after resetting it). Prints the
peaks and the ratio 1.5 GB / 150 MB (flat means near 1). With ``--memory-ocr on`` (the default)
the OCR cache is emptied first, so every slice is read by OCR during packaging (about 10 minutes
for the 714 slices of 1.5 GB on this 2-core machine); ``off`` measures the de-identifier alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PASSPHRASE, package_in_fresh_process, setup_lightbox, write_ct, write_ultrasound  # noqa: E402

VARIANTS = ("original", "ocr_cold", "ocr_warm", "no_ocr", "ocr_batched")
LABELS = {"original": "original", "ocr_cold": "de-id, OCR cold", "ocr_warm": "de-id, OCR warm",
          "no_ocr": "de-id, no OCR", "ocr_batched": "study OCR'd, then warm"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (each times every variant once)")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--memory-sizes", default="150,1500", help="study sizes in MB for the memory run")
    parser.add_argument("--memory-ocr", choices=("off", "on"), default="on")
    parser.add_argument("--memory-runs", type=int, default=1, help="fresh processes per size")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        memory_one(args.one, ocr=args.memory_ocr == "on", runs=args.memory_runs)
        return
    if not args.skip_time:
        timing(args.slices, args.frames, args.runs)
    if not args.skip_memory:
        peaks = []
        for megabytes in [int(s) for s in args.memory_sizes.split(",")]:
            # One process per size: Django is set up once per process, on that size's data dir.
            out = subprocess.run([sys.executable, __file__, "--one", str(megabytes), "--memory-ocr", args.memory_ocr,  # noqa: S603
                                  "--memory-runs", str(args.memory_runs)], check=True, capture_output=True, text=True)
            print(out.stdout.rstrip())
            peaks.append(float(out.stdout.strip().splitlines()[-1].split()[-1]))
        if len(peaks) >= 2:
            print(f"peak RSS ratio, largest / smallest study (de-identified, OCR {args.memory_ocr}): "
                  f"{peaks[-1] / peaks[0]:.3f}")


def timing(slices: int, frames: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-deid-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from django.conf import settings

        from core.actor import Actor
        from exports.packaging import build_archive
        from imaging.models import Instance, Patient, PixelText, Study
        from imaging.pixel_text import pixel_text_for_study
        from imaging.services.ingest import IMPORTER_NAME, dicom_import

        write_ct(tmp_path / "ct", slices=slices)
        write_ultrasound(tmp_path / "us", frames=frames)
        studies = {}
        for key, folder in (("CT", "ct"), ("US", "us")):
            summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / folder])
            if summary.imported == 0:
                raise SystemExit(f"{key}: nothing imported")
            study = Study.objects.get(modalities__contains=key)  # one patient and one study each
            studies[key] = (Patient.objects.get(pk=study.patient_id), study)
        root = Path(settings.STORAGES["dicom"]["OPTIONS"]["location"])

        def size_of(study) -> float:
            return sum((root / p).stat().st_size for p in
                       Instance.objects.filter(series__study=study).values_list("storage_path", flat=True)) / 1e6

        def package(key: str, variant: str) -> tuple[float, object]:
            patient, study = studies[key]
            if variant in ("ocr_cold", "ocr_batched"):
                PixelText.objects.filter(instance__series__study=study).delete()
            t0 = time.perf_counter()
            if variant == "ocr_batched":
                pixel_text_for_study(study=study)  # the batched reader (frames of several instances per call)
            out, result = build_archive(patient=patient, studies=[study], deidentify=variant != "original",
                                        passphrase=PASSPHRASE, final_path=tmp_path / "out" / f"{key}.zip",
                                        ocr=variant != "no_ocr")
            elapsed = time.perf_counter() - t0
            out.unlink()
            return elapsed, result

        for key in studies:  # warm-up: first-use imports, not packaging
            package(key, "original")
            package(key, "no_ocr")
        samples = {(k, v): [] for k in studies for v in VARIANTS}
        masked = {}
        for _ in range(runs):
            for key in studies:
                for variant in VARIANTS:
                    seconds, result = package(key, variant)
                    samples[key, variant].append(seconds)
                    if variant == "ocr_cold":
                        masked[key] = (len(result.pixel_text.masked), len(result.pixel_text.not_checked),
                                       result.file_count)

        print(f"build_archive, medians of {runs} alternating rounds (range), SQLite, {os.cpu_count()} CPUs")
        header = f"{'study':34s} " + " ".join(f"{LABELS[v]:>24s}" for v in VARIANTS)
        print(header)
        for key, (_, study) in studies.items():
            n = Instance.objects.filter(series__study=study).count()
            label = f"{key}: {n} files, {size_of(study):.0f} MB"
            cells = []
            for variant in VARIANTS:
                s = samples[key, variant]
                cells.append(f"{statistics.median(s):7.2f} s ({min(s):.2f}-{max(s):.2f})")
            print(f"{label:34s} " + " ".join(f"{c:>24s}" for c in cells))
        print()
        for key in studies:
            med = {v: statistics.median(samples[key, v]) for v in VARIANTS}
            cold_share = (med["ocr_cold"] - med["no_ocr"]) / med["ocr_cold"]
            warm_share = (med["ocr_warm"] - med["no_ocr"]) / med["ocr_warm"]
            done, unchecked, files = masked[key]
            print(f"{key}: de-identified / original: OCR cold {med['ocr_cold'] / med['original']:.1f}x, "
                  f"OCR warm {med['ocr_warm'] / med['original']:.1f}x, no OCR {med['no_ocr'] / med['original']:.1f}x; "
                  f"OCR's share of a de-identified export: cold {cold_share:.0%}, warm {warm_share:.0%}; "
                  f"cold run masked text in {done} of {files} files, {unchecked} not checked")


def memory_one(megabytes: int, *, ocr: bool, runs: int) -> None:
    from export_memory import write_study

    with tempfile.TemporaryDirectory(prefix="bench-deid-mem-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from core.actor import Actor
        from imaging.services.ingest import IMPORTER_NAME, dicom_import

        write_study(tmp_path / "study", megabytes)
        summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / "study"])
        for f in (tmp_path / "study").glob("*.dcm"):
            f.unlink()  # only the stored copies remain
        peaks, bases, seconds = [], [], []
        for _ in range(runs):
            data = package_in_fresh_process(tmp_path / "lightbox", tmp_path / "out.zip", deidentify=True, ocr=ocr,
                                            cold_ocr=ocr)
            peaks.append(data["after_kb"] / 1024)
            bases.append(data["before_kb"] / 1024)
            seconds.append(data["seconds"])
        peak, base = statistics.median(peaks), statistics.median(bases)
        print(f"study {data['bytes'] / 1e6:6.0f} MB, {summary.imported} files, de-identified, OCR "
              f"{'on (cache emptied)' if ocr else 'off'}: {statistics.median(seconds):.1f} s; before packaging "
              f"{base:.1f} MB; packaging added {peak - base:.1f} MB; masked {data['masked']}, not checked "
              f"{data['not_checked']}; median of {runs} ({min(peaks):.1f}-{max(peaks):.1f}); peak RSS MB {peak:.1f}")


if __name__ == "__main__":
    main()

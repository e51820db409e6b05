"""Export packaging throughput: a generated 300-slice 512x512 CT study, Lightbox vs 7-Zip.

    .venv/bin/python benchmarks/export_throughput.py [--slices 300] [--size 512]

Lightbox: ``exports.packaging.build_archive`` (stream each stored original into a WinZip
AES-256 entry, SHA-256 of every file, DICOMDIR, signed MANIFEST.json) on a throwaway data dir.
7-Zip: ``7z a -tzip -mem=AES256 -mx0`` on the same stored files, in the same run. Also times
the de-identified archive (dicognito per instance) for information. Prints MB/s and ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import setup_lightbox  # noqa: E402

PASSPHRASE = "bench-orbit-lantern-velvet-cactus-harbor"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from django.conf import settings

        from exports.packaging import build_archive
        from imaging.dicom import synth
        from imaging.models import Instance, Patient, Study
        from imaging.services import dicom_import

        identity = synth.Identity("Bench", "Mark", "BENCH1", "BENCH", dt.date(1970, 1, 1))
        header = synth.StudyHeader(description="CT CHEST", date=dt.date(2025, 1, 1), time=dt.time(9, 0),
                                   institution="Bench", referring_physician="", accession="B1", modality="CT")
        files = synth.write_ct_series(tmp_path / "study", identity, header, slices=args.slices, size=args.size)
        summary = dicom_import(paths=[tmp_path / "study"])
        assert summary.imported == len(files)
        study = Study.objects.get()
        patient = Patient.objects.get()
        root = Path(settings.STORAGES["dicom"]["OPTIONS"]["location"])
        stored = [str(root / i.storage_path) for i in Instance.objects.all()]
        size_mb = sum(Path(p).stat().st_size for p in stored) / 1e6
        print(f"{len(stored)} slices {args.size}x{args.size}, {size_mb:.0f} MB stored")

        def lightbox(deidentify: bool) -> float:
            t0 = time.perf_counter()
            out, _ = build_archive(patient=patient, studies=[study], deidentify=deidentify, passphrase=PASSPHRASE,
                                   final_path=tmp_path / "out" / "lightbox.zip")
            elapsed = time.perf_counter() - t0
            out.unlink()
            return elapsed

        def sevenzip() -> float:
            target = tmp_path / "out" / "7z.zip"
            target.unlink(missing_ok=True)
            t0 = time.perf_counter()
            subprocess.run(["7z", "a", "-tzip", "-mem=AES256", "-mx0", f"-p{PASSPHRASE}", str(target), *stored],  # noqa: S603, S607
                           check=True, capture_output=True)
            elapsed = time.perf_counter() - t0
            target.unlink()
            return elapsed

        lb = min(lightbox(False) for _ in range(args.runs))
        sz = min(sevenzip() for _ in range(args.runs))
        de = lightbox(True)

    print(f"Lightbox original     : {lb:6.2f} s  {size_mb / lb:7.1f} MB/s  (best of {args.runs})")
    print(f"7z -tzip AES256 -mx0  : {sz:6.2f} s  {size_mb / sz:7.1f} MB/s  (best of {args.runs})")
    print(f"Lightbox de-identified: {de:6.2f} s  {size_mb / de:7.1f} MB/s  (one run)")
    print(f"ratio Lightbox/7-Zip throughput: {sz / lb:.2f}x")


if __name__ == "__main__":
    main()

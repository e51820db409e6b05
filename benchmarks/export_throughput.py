"""Export packaging throughput: a generated 300-slice 512x512 CT study, Lightbox vs 7-Zip.

    .venv/bin/python benchmarks/export_throughput.py [--slices 300] [--size 512] [--runs 7]

Lightbox: ``exports.packaging.build_archive`` (stream each stored original into a WinZip
AES-256 entry, SHA-256 of every file, DICOMDIR, signed MANIFEST.json, SHA-256 of the archive,
fsync) on a throwaway data dir. 7-Zip: ``7z a -tzip -mem=AES256 -mx0`` on the same stored files,
in the same run; runs alternate between the two so that load from other processes on a shared
machine falls on both alike. 7-Zip does not fsync its output, Lightbox must (the archive is
published with an atomic rename, docs/security.md §17), so 7-Zip is also timed followed by an fsync
of its archive, and as part of the same work done by 7-Zip alone: ``7z h -scrcSHA256`` of every
file while ``7z a`` packs them, then of the archive, then an fsync (all that Lightbox does
but the DICOMDIR and the signed manifest). Prints medians, ranges and ratios, and times the
de-identified archive (dicognito per instance) once, for information.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PASSPHRASE, fsync_path, setup_lightbox, sevenzip_zip, write_ct  # noqa: E402

# 7-Zip's own SHA-256 (SHA-NI, like OpenSSL's); coreutils' sha256sum runs at a quarter of its speed here.
SHA256 = ["7z", "h", "-scrcSHA256"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from django.conf import settings

        from core.actor import Actor
        from exports.packaging import build_archive
        from imaging.models import Instance, Patient, Study
        from imaging.services.ingest import IMPORTER_NAME, dicom_import

        files = write_ct(tmp_path / "study", slices=args.slices, size=args.size)
        summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / "study"])
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

        def sevenzip() -> tuple[float, float]:
            """Seconds for 7z alone, and for 7z followed by an fsync of its archive."""
            target = tmp_path / "out" / "7z.zip"
            target.unlink(missing_ok=True)
            t0 = time.perf_counter()
            sevenzip_zip(target, stored)
            elapsed = time.perf_counter() - t0
            fsync_path(target)
            synced = time.perf_counter() - t0
            target.unlink()
            return elapsed, synced

        def sevenzip_same_work() -> float:
            """Seconds for 7-Zip doing all that Lightbox does: ``7z h -scrcSHA256`` of every file
            while ``7z a`` packs them (both cores busy), then of the archive, then an fsync."""
            target = tmp_path / "out" / "7z-same.zip"
            target.unlink(missing_ok=True)
            t0 = time.perf_counter()
            hashing = subprocess.Popen([*SHA256, *stored], stdout=subprocess.DEVNULL)  # noqa: S603, S607
            sevenzip_zip(target, stored)
            subprocess.run([*SHA256, str(target)], check=True, stdout=subprocess.DEVNULL)  # noqa: S603, S607
            fsync_path(target)
            if hashing.wait() != 0:
                raise SystemExit("7z h failed")
            elapsed = time.perf_counter() - t0
            target.unlink()
            return elapsed

        lb, sz, sz_sync, sz_same = [], [], [], []
        lightbox(False)  # warm-up: first-use imports and caches, not packaging
        for _ in range(args.runs):
            lb.append(lightbox(False))
            plain, synced = sevenzip()
            sz.append(plain)
            sz_sync.append(synced)
            sz_same.append(sevenzip_same_work())
        de = lightbox(True)

    def line(label: str, samples: list[float]) -> str:
        med = statistics.median(samples)
        return (f"{label:30s}: {med:6.2f} s  {size_mb / med:7.1f} MB/s  "
                f"(median of {len(samples)}; {min(samples):.2f}-{max(samples):.2f} s)")

    print(line("Lightbox original (fsync)", lb))
    print(line("7z -tzip AES256 -mx0", sz))
    print(line("7z -tzip AES256 -mx0 + fsync", sz_sync))
    print(line("7z a + 7z h of files, archive", sz_same))
    print(f"{'Lightbox de-identified':30s}: {de:6.2f} s  {size_mb / de:7.1f} MB/s  (one run)")
    ratios = sorted(s / x for s, x in zip(sz, lb, strict=True))
    ratios_sync = sorted(s / x for s, x in zip(sz_sync, lb, strict=True))
    print(f"throughput Lightbox/7-Zip, run by run: median {statistics.median(ratios):.2f}x "
          f"({ratios[0]:.2f}-{ratios[-1]:.2f}x); against 7-Zip + fsync: median "
          f"{statistics.median(ratios_sync):.2f}x ({ratios_sync[0]:.2f}-{ratios_sync[-1]:.2f}x)")
    ratios_same = sorted(s / x for s, x in zip(sz_same, lb, strict=True))
    print(f"against 7-Zip doing the same work (file hashes, archive hash, fsync): median "
          f"{statistics.median(ratios_same):.2f}x ({ratios_same[0]:.2f}-{ratios_same[-1]:.2f}x)")


if __name__ == "__main__":
    main()

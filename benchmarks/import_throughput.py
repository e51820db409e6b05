"""Import throughput: a generated 300-slice 512x512 CT study, Lightbox vs Orthanc, one run.

    .venv/bin/python benchmarks/import_throughput.py [--slices 300] [--size 512]

Lightbox: ``dicom_import`` (parse, SHA-256, content-addressed store, rows, one audit event) on
a throwaway data dir (SQLite unless DATABASE_URL is set). Orthanc (Debian package, SQLite index):
the same files POSTed one by one to its REST API ``/instances`` on a loopback port.
Prints instances per second for each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import orthanc, post, setup_lightbox, write_ct  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from core.actor import Actor
        from imaging.services.ingest import IMPORTER_NAME, dicom_import

        t0 = time.perf_counter()
        files = write_ct(tmp_path / "study", slices=args.slices, size=args.size)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"generated {len(files)} slices {args.size}x{args.size} ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / "study"])
        lightbox_s = time.perf_counter() - t0
        assert summary.imported == len(files), summary.as_dict()["files"][:3]

        with orthanc() as base:
            blobs = [f.read_bytes() for f in files]
            t0 = time.perf_counter()
            for blob in blobs:
                post(base + "/instances", blob)
            orthanc_s = time.perf_counter() - t0

    lb_rate, or_rate = len(files) / lightbox_s, len(files) / orthanc_s
    print(f"Lightbox import_dicom : {lightbox_s:6.2f} s  {lb_rate:7.1f} instances/s")
    print(f"Orthanc REST /instances: {orthanc_s:6.2f} s  {or_rate:7.1f} instances/s")
    print(f"ratio Lightbox/Orthanc throughput: {lb_rate / or_rate:.2f}x")


if __name__ == "__main__":
    main()

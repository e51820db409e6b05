"""First render of a 512x512 CT slice, Lightbox vs Orthanc's /instances/{id}/preview, one run.

    .venv/bin/python benchmarks/render_first_slice.py [--slices 20]

Each of N distinct slices is rendered once cold by each side (median reported), then Lightbox's
cached render is compared with reading the same bytes straight from disk ("static-file speed").
Lightbox is called in-process (no HTTP); Orthanc over loopback HTTP, so Orthanc's numbers
include a local round trip of roughly a millisecond or less.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import get, median_ms, orthanc, post, setup_lightbox, write_ct  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from django.conf import settings

        from core.actor import Actor
        from imaging.models import Instance
        from imaging.services.ingest import IMPORTER_NAME, dicom_import
        from imaging.services.rendering import render_frame

        files = write_ct(tmp_path / "study", slices=args.slices)
        dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / "study"])
        instances = list(Instance.objects.order_by("number"))

        cold, warm, static = [], [], []
        for instance in instances:
            t0 = time.perf_counter()
            render_frame(instance)
            cold.append(time.perf_counter() - t0)
        for instance in instances:
            t0 = time.perf_counter()
            data = render_frame(instance)
            warm.append(time.perf_counter() - t0)
        root = Path(settings.STORAGES["renders"]["OPTIONS"]["location"])
        cached = sorted((root / "renders").rglob("*.png"))
        for path in cached:
            t0 = time.perf_counter()
            path.read_bytes()
            static.append(time.perf_counter() - t0)
        png_kb = len(data) / 1024

        orthanc_cold = []
        with orthanc() as base:
            ids = [json.loads(post(base + "/instances", f.read_bytes()))["ID"] for f in files]
            for oid in ids:
                t0 = time.perf_counter()
                get(f"{base}/instances/{oid}/preview")
                orthanc_cold.append(time.perf_counter() - t0)

    lb, orth = median_ms(cold), median_ms(orthanc_cold)
    print(f"slices: {len(instances)} CT 512x512, PNG ~{png_kb:.0f} KB")
    print(f"Lightbox first render (decode+window+PNG): median {lb:6.1f} ms")
    print(f"Orthanc /instances/{{id}}/preview (first) : median {orth:6.1f} ms")
    print(f"ratio Lightbox/Orthanc first-render time: {lb / orth:.2f}x (lower is faster)")
    print(f"Lightbox cached render: median {median_ms(warm):6.2f} ms; plain file read: {median_ms(static):6.2f} ms "
          f"(ratio {median_ms(warm) / median_ms(static):.1f}x)")


if __name__ == "__main__":
    main()

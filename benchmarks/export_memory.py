"""Peak memory of export packaging for a ~150 MB and a ~1.5 GB study (streaming, not whole files).

    .venv/bin/python benchmarks/export_memory.py [--sizes 150,1500] [--runs 3] [--postgres URL]

For each size: writes a CT series of 1024x1024 slices (2 MB each; one phantom slice, new UIDs per
file, so generation is quick), imports it, then packages it ``--runs`` times, each in a fresh
child process that first loads what a Celery worker loads (Django set up, the Celery app, every
app's ``tasks`` module, the worker machinery) and reports its resident set size before
``build_archive`` and the peak during it (``VmHWM`` after resetting it through
``/proc/self/clear_refs``; Linux only). Prints the median and the range of the runs. Then a
real worker (``python -m portal.worker``) packages the study ``--runs`` times through the export task, and its peak
over its whole life is printed after each: the worker's own machinery and the memory a Python
process keeps after a job come on top of the children's figures.

SQLite by default (the embedded default); ``--postgres postgres://user@host:5432`` runs on a
fresh database made on that server (``lightbox_bench_exportmem``, dropped and made again each
time), as production does: the PostgreSQL driver itself adds about 8 MB to every process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, setup_lightbox  # noqa: E402

CHILD = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
# What `celery -A portal worker` has loaded before its first task: the app, every app's tasks
# module (autodiscovery) and the worker machinery. Measuring less would flatter the baseline.
from portal.celery import app
app.loader.import_default_modules()
import celery.apps.worker, celery.worker.consumer  # noqa: E401,F401
from exports.packaging import build_archive
from imaging.models import Patient, Study
patient = Patient.objects.get()
studies = list(Study.objects.all())
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
before = status("VmRSS")
# Reset the kernel's peak-RSS mark (VmHWM) so it measures packaging alone (Linux).
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
out, result = build_archive(patient=patient, studies=studies, deidentify=sys.argv[3] == "1",
                            passphrase="bench-orbit-lantern-velvet-cactus-harbor", final_path=Path(sys.argv[2]))
after = status("VmHWM")
print(json.dumps({"before_kb": before, "after_kb": after, "bytes": result.size, "files": result.file_count}))
out.unlink()
"""


def write_study(folder: Path, megabytes: int) -> None:
    import datetime as dt

    import pydicom

    from imaging.dicom import synth

    identity = synth.Identity("Bench", "Memory", "BENCHMEM", "BENCH", dt.date(1970, 1, 1))
    header = synth.StudyHeader(description="CT BIG", date=dt.date(2025, 1, 1), time=dt.time(9, 0),
                               institution="Bench", referring_physician="", accession="BM1", modality="CT")
    [template] = synth.write_ct_series(folder / "t", identity, header, slices=1, size=1024)
    ds = pydicom.dcmread(template)
    template.unlink()
    count = max(1, megabytes * 1_000_000 // template_size(ds))
    for i in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = synth.new_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"IM{i:05d}.dcm", enforce_file_format=True)


def template_size(ds) -> int:
    return len(ds.PixelData) + 2000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="150,1500", help="study sizes in MB, comma-separated")
    parser.add_argument("--deidentify", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="packaging runs per size (fresh process each)")
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL, without database name")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.deidentify, args.runs)
        return
    for megabytes in [int(s) for s in args.sizes.split(",")]:
        env = dict(os.environ)
        if args.postgres:
            env["DATABASE_URL"] = fresh_database(args.postgres.rstrip("/"), "lightbox_bench_exportmem")
        # One process per size: Django is set up once per process, on that size's data dir.
        subprocess.run([sys.executable, __file__, "--one", str(megabytes), "--runs", str(args.runs)]  # noqa: S603
                       + (["--deidentify"] if args.deidentify else []), check=True, env=env)


def fresh_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def measure(megabytes: int, deidentify: bool, runs: int) -> None:
    import statistics

    with tempfile.TemporaryDirectory(prefix="bench-exportmem-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from core.actor import Actor
        from imaging.services.ingest import IMPORTER_NAME, dicom_import

        write_study(tmp_path / "study", megabytes)
        summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[tmp_path / "study"])
        for f in (tmp_path / "study").glob("*.dcm"):
            f.unlink()  # only the stored copies remain: the disk holds one copy plus the archive
        env = dict(os.environ, LIGHTBOX_DATA_DIR=str(tmp_path / "lightbox"))
        peaks, bases = [], []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(tmp_path / "out.zip"),  # noqa: S603
                                  "1" if deidentify else "0"], env=env, capture_output=True, text=True, check=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            peaks.append(data["after_kb"] / 1024)
            bases.append(data["before_kb"] / 1024)
        peak, base = statistics.median(peaks), statistics.median(bases)
        print(f"study {data['bytes'] / 1e6:7.0f} MB, {summary.imported} files: peak RSS while packaging "
              f"{peak:6.1f} MB (median of {runs}, {min(peaks):.1f}-{max(peaks):.1f}); before packaging, worker "
              f"imports loaded: {base:5.1f} MB ({min(bases):.1f}-{max(bases):.1f}); packaging added {peak - base:5.1f} MB")
        idle, after = real_worker(env, patient_studies(), deidentify, runs)
        print(f"  a real worker (python -m portal.worker --pool=solo -Q exports): {idle:5.1f} MB idle; peak over its life after "
              + ", ".join(f"export {i + 1}: {mb:5.1f} MB" for i, mb in enumerate(after)))


def patient_studies():
    from imaging.models import Patient, Study

    return Patient.objects.get(), list(Study.objects.all())


def real_worker(env: dict[str, str], who, deidentify: bool, runs: int) -> tuple[float, list[float]]:
    """The same study packaged ``runs`` times by a real worker process (``portal.worker``) through the
    export task (the job row, progress updates, the email), on the same data dir and broker.
    Returns its RSS when idle and its peak (VmHWM, over its whole life) after each export: what
    the child processes above measure, plus the consumer machinery and what a worker keeps."""
    import time

    from exports import services
    from exports.models import ExportRequest

    patient, studies = who
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "portal.worker", "--pool=solo", "-Q", "exports",  # noqa: S603
                             "--loglevel=WARNING"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def status(key: str) -> float:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(key)

    try:
        time.sleep(8)  # started and connected: its RSS has settled
        idle, peaks = status("VmRSS"), []
        for _ in range(runs):
            export = services._create(patient=patient, studies=studies, deidentify=deidentify, requested_by=None,
                                      passphrase="bench-orbit-lantern-velvet-cactus-harbor")
            services.export_dispatch(export_id=export.pk)
            while (export := ExportRequest.objects.get(pk=export.pk)).status in ExportRequest.ACTIVE:
                time.sleep(0.2)
            if export.status != "ready":
                raise RuntimeError(f"export {export.status}: {export.error}")
            peaks.append(status("VmHWM"))
            services.archive_path(export).unlink()
        return idle, peaks
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()

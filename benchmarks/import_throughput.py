"""Import throughput: a generated CT study (default 3,000 slices of 512x512), Lightbox vs Orthanc.

    .venv/bin/python benchmarks/import_throughput.py [--slices 3000] [--size 512] [--files DIR] [--rounds 5]

Lightbox: ``manage.py import_dicom DIR`` in a process of its own, timed from its start to its
exit (Django's start included), on a throwaway data dir and database (SQLite unless
DATABASE_URL is set; a PostgreSQL database named there is used as is, so give one of your own,
and one round). Lightbox and Orthanc's keep-alive run take turns for ``--rounds`` rounds (5),
each round in the other order, with an untimed ``sync`` after each run; medians are compared.
Nothing any side wrote is removed before every side has run (why: ``main``).
Orthanc (Debian package, SQLite index), a fresh instance per client: the same files POSTed one by
one to ``/instances`` on a loopback port, first over one keep-alive connection (http.client, what
any real client does), then with a new connection per file (like ``curl`` per file).
Prints instances per second for each, the ratios, and the load average before each run, and the
CPU seconds each side used (Lightbox's command with its workers; Orthanc's server and its
keep-alive client): on a machine other work keeps busy, wall-clock ratios follow the CPU shares
the scheduler hands out, and CPU per instance is the steadier comparison.
The floor: what any importer must do with these files and nothing else (read, SHA-256, write a
copy, fsync it; no parsing, no database), in one process per core, each file's copy fsynced in
batches as the import does; its ratio to Orthanc is the best the import could reach here.
``--files DIR`` keeps the generated files there (generating 3,000 slices takes about 2 minutes)
and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, orthanc, post, setup_lightbox, write_ct  # noqa: E402


def post_keep_alive(base: str, blobs: list[bytes]) -> None:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        for blob in blobs:
            conn.request("POST", "/instances", body=blob, headers={"Content-Type": "application/dicom"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"Orthanc answered {response.status}")
    finally:
        conn.close()


def _floor_chunk(job: tuple[list[str], str]) -> int:
    paths, out_dir = job
    written = []
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=out_dir)
        os.write(fd, data)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # writeback starts now, as in the import
        written.append(fd)
    for fd in written:
        os.fsync(fd)
        os.close(fd)
    return len(paths)


def floor(files: list[Path], out_dir: Path) -> float:
    """Seconds to read, hash, write and fsync every file in one process per core (no parsing)."""
    out_dir.mkdir()
    names = [str(f) for f in files]
    chunks = [(names[i:i + 16], str(out_dir)) for i in range(0, len(names), 16)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        done = sum(pool.imap_unordered(_floor_chunk, chunks))
    seconds = time.perf_counter() - t0
    assert done == len(files)
    return seconds


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def lightbox_import(study: Path, data_dir: Path) -> tuple[float, float]:
    """``manage.py import_dicom`` in a process of its own on a fresh data dir (migrated first, in
    another process, not timed): seconds from its start to its exit, and its CPU seconds."""
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(data_dir)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "manage.py", "import_dicom", str(study)], cwd=ROOT,  # noqa: S603
                         env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    cpu = children_cpu() - cpu0  # the command and its worker processes
    count = len(list(study.glob("*.dcm")))
    if run.returncode != 0 or f"Imported {count}," not in run.stdout:
        raise SystemExit(f"import failed: {run.stdout[-500:]} {run.stderr[-2000:]}")
    return seconds, cpu


def orthanc_keep_alive(blobs: list[bytes], keep_in: Path) -> tuple[float, float]:
    """Orthanc with one keep-alive client: seconds, and CPU seconds (server and client)."""
    cpu0, client0 = children_cpu(), time.process_time()
    with orthanc(keep_in=keep_in) as base:
        t0 = time.perf_counter()
        post_keep_alive(base, blobs)
        seconds = time.perf_counter() - t0
    # Orthanc's own CPU (counted once it has exited) and the client's.
    return seconds, children_cpu() - cpu0 + time.process_time() - client0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=3000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--files", type=Path, help="keep (and reuse) the generated files in this folder")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of Lightbox and Orthanc keep-alive, in alternating order")
    args = parser.parse_args()
    if args.rounds > 1 and os.environ.get("DATABASE_URL"):
        raise SystemExit("--rounds above 1 needs SQLite (each round imports the same files into a fresh data dir)")

    # _no_removal_between_runs: nothing any side wrote is removed until every side has run. This
    # volume is ext4 without a journal, where a new inode skips the free ones deleted in the last
    # 5 s (300 s while their inode-table block is unwritten), one buffer look-up each
    # (fs/ext4/ialloc.c, recently_deleted). Removing Orthanc's 3,000 files just before Lightbox's
    # run put a fifth of the import's CPU there (perf: recently_deleted, find_get_block_common under
    # ext4_create and ext4_mkdir); removing them at the end leaves both sides the same disk.
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")  # for write_ct; each import below gets its own data dir
        study = args.files or tmp_path / "study"
        files = sorted(study.glob("*.dcm")) if study.exists() else []
        if len(files) != args.slices:
            t0 = time.perf_counter()
            files = write_ct(study, slices=args.slices, size=args.size)
            print(f"generated {len(files)} slices in {time.perf_counter() - t0:.1f}s")
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{len(files)} files, {size_mb:.0f} MB; cores: {os.cpu_count()}")
        blobs = [f.read_bytes() for f in files]  # Orthanc's clients read from memory: no disk for them

        lightbox_runs: list[tuple[float, float]] = []
        keep_alive_runs: list[tuple[float, float]] = []
        for round_ in range(args.rounds):
            sides = [("Orthanc keep-alive", lambda: keep_alive_runs.append(orthanc_keep_alive(blobs, tmp_path))),
                     ("Lightbox", lambda r=round_: lightbox_runs.append(
                         lightbox_import(study, tmp_path / f"lightbox-{r}")))]
            for name, run_side in sides if round_ % 2 == 0 else reversed(sides):
                print(f"round {round_ + 1}: {name}, load {load()}")
                run_side()
                # Untimed: what a side left unwritten (Orthanc does not fsync its files) is
                # written now, not during the next side's run, whose syncfs would wait for it.
                os.sync()

        with orthanc(keep_in=tmp_path) as base:
            print(f"load {load()}")
            t0 = time.perf_counter()
            for blob in blobs:
                post(base + "/instances", blob)
            per_file_s = time.perf_counter() - t0

        print(f"load {load()}")
        floor_s = floor(files, tmp_path / "floor")

    n = len(files)
    for i, ((lb_s, lb_cpu), (ka_s, ka_cpu)) in enumerate(zip(lightbox_runs, keep_alive_runs, strict=True), 1):
        print(f"round {i}: Lightbox {lb_s:6.2f} s ({n / lb_s:6.1f}/s, {lb_cpu:.1f} CPU s), Orthanc keep-alive "
              f"{ka_s:6.2f} s ({n / ka_s:6.1f}/s, {ka_cpu:.1f} CPU s): {ka_s / lb_s:.2f}x")
    lightbox_s = statistics.median(s for s, _ in lightbox_runs)
    keep_alive_s = statistics.median(s for s, _ in keep_alive_runs)
    lightbox_cpu = statistics.median(c for _, c in lightbox_runs)
    keep_alive_cpu = statistics.median(c for _, c in keep_alive_runs)
    lb, ka, pf = n / lightbox_s, n / keep_alive_s, n / per_file_s
    print(f"medians of {args.rounds} round(s):")
    print(f"Lightbox import_dicom (process start included): {lightbox_s:6.2f} s  {lb:7.1f} instances/s")
    print(f"Orthanc REST /instances, keep-alive client     : {keep_alive_s:6.2f} s  {ka:7.1f} instances/s")
    print(f"Orthanc REST /instances, a connection per file : {per_file_s:6.2f} s  {pf:7.1f} instances/s")
    print(f"Floor: read + SHA-256 + write + fsync, no parsing : {floor_s:6.2f} s  {n / floor_s:7.1f} instances/s")
    print(f"CPU seconds: Lightbox {lightbox_cpu:.1f}, Orthanc keep-alive (server + client) {keep_alive_cpu:.1f}: "
          f"{keep_alive_cpu / lightbox_cpu:.2f}x less CPU per instance for Lightbox (the shares a loaded machine gives out)")
    print(f"ratio Lightbox/Orthanc keep-alive: {lb / ka:.2f}x (goal >= 2)")
    print(f"ratio floor/Orthanc keep-alive: {n / floor_s / ka:.2f}x (the most any import could reach here)")
    print(f"ratio Lightbox/Orthanc per-file connection: {lb / pf:.2f}x")


if __name__ == "__main__":
    main()

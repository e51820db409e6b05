"""Shared set-up for the imaging benchmarks: an isolated Lightbox and a loopback Orthanc.

Not tests: these print measurements and ratios (STYLE.md "Tests": timings belong here).
Every server runs on 127.0.0.1 only, with a bounded number of requests, and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def setup_lightbox(data_dir: Path) -> None:
    """Django on a throwaway data dir (SQLite unless DATABASE_URL is set), migrated."""
    sys.path.insert(0, str(ROOT))
    os.environ["LIGHTBOX_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def write_ct(directory: Path, *, slices: int, size: int = 512) -> list[Path]:
    """The benchmarks' generated CT series (``imaging.dicom.synth``; call after ``setup_lightbox``)."""
    import datetime as dt

    from imaging.dicom import synth

    identity = synth.Identity("Bench", "Mark", "BENCH1", "BENCH", dt.date(1970, 1, 1))
    study = synth.StudyHeader(description="CT CHEST", date=dt.date(2025, 1, 1), time=dt.time(9, 0),
                              institution="Bench", referring_physician="", accession="B1", modality="CT")
    return synth.write_ct_series(directory, identity, study, slices=slices, size=size)


# The export benchmarks' passphrase, and the peer they are measured against: 7-Zip's AES-256 ZIP,
# stored (issue 6).
PASSPHRASE = "bench-orbit-lantern-velvet-cactus-harbor"


def sevenzip_zip(target: Path, files: list[str]) -> None:
    """``7z a -tzip -mem=AES256 -mx0`` of ``files`` into ``target``."""
    subprocess.run(["7z", "a", "-tzip", "-mem=AES256", "-mx0", f"-p{PASSPHRASE}", str(target), *files],  # noqa: S603, S607
                   check=True, capture_output=True)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def orthanc() -> Iterator[str]:
    """Start the Debian package's Orthanc on a loopback port with a temporary config."""
    if not Path(ORTHANC).exists():
        raise SystemExit("Orthanc is not installed (apt-get install -y orthanc)")
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as tmp:
        port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": f"{tmp}/db",
            "IndexDirectory": f"{tmp}/db",
            "HttpPort": port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": False,
            "Plugins": [],
            "StorageCompression": False,
        }
        (Path(tmp) / "orthanc.json").write_text(json.dumps(config))
        log = open(Path(tmp) / "orthanc.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([ORTHANC, f"{tmp}/orthanc.json"], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get(base + "/system")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("Orthanc did not start") from None
                    time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - loopback URL we built
        return resp.read()


def post(url: str, body: bytes) -> bytes:
    req = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    req.add_header("Content-Type", "application/dicom")
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback URL we built
        return resp.read()


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000

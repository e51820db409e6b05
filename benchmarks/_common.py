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
# stored (no compression).
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
def orthanc(keep_in: Path | None = None) -> Iterator[str]:
    """Start the Debian package's Orthanc on a loopback port with a temporary config. Its storage
    is removed when it stops, unless ``keep_in`` is given: then it is made in that folder and left
    for the caller to remove (``import_throughput.py`` removes nothing until every side has run;
    see ``_no_removal_between_runs`` there)."""
    if not Path(ORTHANC).exists():
        raise SystemExit("Orthanc is not installed (apt-get install -y orthanc)")
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="bench-orthanc-", dir=keep_in)) if keep_in
          else tempfile.TemporaryDirectory(prefix="bench-orthanc-")) as tmp:
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


# --- De-identified copies --------------------------------------------------------------------

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian's fonts-dejavu-core
# What the generated ultrasound's header says and its pixels show: OCR must find both.
US_NAME, US_ID = ("Okafor", "Adaeze"), "US4471902"


def write_ultrasound(directory: Path, *, frames: int = 30, rows: int = 480, cols: int = 640,
                     photometric: str = "RGB") -> Path:
    """A generated multi-frame ultrasound (``frames`` RGB or YBR_FULL frames, uncompressed) whose
    pixels show the patient's name, ID and exam date in the corner, the way scanners burn them in,
    while its header says ``BurnedInAnnotation = NO`` (the flag alone is not trusted).
    The header carries the same identifiers (``imaging.dicom.synth``). Call after ``setup_lightbox``."""
    import datetime as dt

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from imaging.dicom import synth

    family, given = US_NAME
    identity = synth.Identity(family, given, US_ID, "BENCH", dt.date(1984, 3, 7), sex="F")
    study = synth.StudyHeader(description="US ABDOMEN", date=dt.date(2025, 2, 3), time=dt.time(14, 5),
                              institution="Bench", referring_physician="", accession="BU1", modality="US",
                              station="USROOM2", manufacturer="Bench", model="Sono 1")
    ds = synth._base(identity, study, "1.2.840.10008.5.1.4.1.1.3.1", synth.new_uid(), 1, "ABDOMEN", 1)  # noqa: SLF001 - the header every synth writer uses
    font = ImageFont.truetype(FONT, 18)
    rng = np.random.default_rng(15)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    angle = np.arctan2(xx - cols / 2, yy + 20)
    radius = np.hypot(xx - cols / 2, yy + 20)
    fan = (np.abs(angle) < 0.6) & (radius > 60) & (radius < rows * 0.95)
    frames_rgb = []
    for i in range(frames):
        speckle = rng.rayleigh(40.0, size=(rows, cols)).astype(np.float32)
        organ = ((yy - rows * 0.55 - 8 * np.sin(i / 5)) / (rows * 0.18)) ** 2 + ((xx - cols / 2) / (cols * 0.16)) ** 2 < 1
        grey = np.where(fan, np.clip(speckle * np.where(organ, 1.8, 1.0), 0, 255), 0).astype(np.uint8)
        image = Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
        draw = ImageDraw.Draw(image)
        # Burned-in text as scanners place it: name and ID top left, the exam date top right.
        draw.text((10, 8), f"{family.upper()}, {given.upper()}", font=font, fill=(255, 255, 255))
        draw.text((10, 32), f"ID: {US_ID}", font=font, fill=(255, 255, 255))
        draw.text((cols - 130, 8), study.date.strftime("%d/%m/%Y"), font=font, fill=(255, 255, 255))
        frames_rgb.append(np.asarray(image))
    pixels = np.stack(frames_rgb)
    if photometric == "YBR_FULL":
        from pydicom.pixels import convert_color_space

        pixels = convert_color_space(pixels, "RGB", "YBR_FULL")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = "33.3"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "US0001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# Run in a fresh interpreter by ``package_in_fresh_process``: loads what a Celery worker loads
# before its first task, resets the kernel's peak-RSS mark, packages, and prints one JSON line.
# The same approach as benchmarks/export_memory.py, with switches to turn OCR off or empty its cache.
PACKAGE_CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
options = json.loads(sys.argv[3])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
# What `celery -A portal worker` has loaded before its first task: the app, every app's tasks
# module (autodiscovery) and the worker machinery. Measuring less would flatter the baseline.
from portal.celery import app
app.loader.import_default_modules()
import celery.apps.worker, celery.worker.consumer  # noqa: E401,F401
from exports.packaging import build_archive
from imaging.models import Patient, PixelText, Study
if options["cold_ocr"]:
    PixelText.objects.all().delete()  # every image is read by OCR again
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
t0 = time.perf_counter()
out, result = build_archive(patient=patient, studies=studies, deidentify=options["deidentify"],
                            passphrase=options["passphrase"], final_path=Path(sys.argv[2]), ocr=options["ocr"])
seconds = time.perf_counter() - t0
after = status("VmHWM")
print(json.dumps({"before_kb": before, "after_kb": after, "bytes": result.size, "files": result.file_count,
                  "seconds": seconds, "masked": len(result.pixel_text.masked),
                  "not_checked": len(result.pixel_text.not_checked)}))
out.unlink()
"""


def package_in_fresh_process(data_dir: Path, out: Path, *, deidentify: bool, ocr: bool = True,
                             cold_ocr: bool = False) -> dict:
    """Package every study of the one patient in ``data_dir`` in a new Python process that has
    first loaded what a worker loads; returns its RSS before (``before_kb``) and its peak while
    packaging (``after_kb``, ``VmHWM``), the archive's size, the seconds taken and how many
    images were masked or not checked. ``cold_ocr`` empties the OCR cache first (Linux only)."""
    options = {"deidentify": deidentify, "ocr": ocr, "cold_ocr": cold_ocr, "passphrase": PASSPHRASE}
    env = dict(os.environ, LIGHTBOX_DATA_DIR=str(data_dir))
    done = subprocess.run([sys.executable, "-c", PACKAGE_CHILD, str(ROOT), str(out), json.dumps(options)],  # noqa: S603
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"packaging child failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

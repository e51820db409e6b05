"""The least time any export of a 300-slice CT can take on this machine, next to 7-Zip's.

    .venv/bin/python benchmarks/export_floor.py [--slices 300] [--size 512] [--runs 5]

The target is packaging at least as fast as ``7z a -tzip -mem=AES256 -mx0`` on the same
files. Lightbox's archive must do everything 7-Zip does (a PBKDF2 key per entry, AES-256-CTR,
HMAC-SHA1) and more: a SHA-256 of every file (MANIFEST.json, and the check against the
fingerprint taken at ingest) and a SHA-256 of the whole archive (``ExportRequest.sha256``).

This script times each of those steps alone, single-threaded, on the very files 7-Zip packs,
with the libraries Lightbox uses (OpenSSL through ``hashlib`` and ``cryptography``), and
measures the CPU time they take (``time.thread_time``), no packaging around them:

- the reads of every stored file (into one reusable buffer) and the writes of as many bytes
  to a file, without fsync;
- a SHA-256 of every file; PBKDF2-HMAC-SHA1 for every entry (``exports.packaging._derive``,
  the files plus DICOMDIR, README.txt, MANIFEST.json and MANIFEST.sig);
- AES-256 in OpenSSL's own CTR mode (its big-endian counter is not WinZip's, so this is
  cheaper than what any WinZip AES writer can do), HMAC-SHA1 of the ciphertext, and a
  SHA-256 of the archive's bytes.

No program can finish that work faster than its CPU time divided by the cores
(``os.cpu_count()``): that is the floor. 7-Zip runs in the same loop, alternating, and its own
CPU time (user + system, from ``wait4``) is shown too. The script prints the floor against
7-Zip, and the floor again without each of the two hashes, to show what the target costs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PASSPHRASE, setup_lightbox, sevenzip_zip, write_ct  # noqa: E402

PIECE = 512 * 1024
EXTRA_ENTRIES = 4  # DICOMDIR, README.txt, MANIFEST.json, MANIFEST.sig


def cpu(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        from exports.packaging import _derive

        files = [str(p) for p in write_ct(tmp_path / "study", slices=args.slices, size=args.size)]
        total = sum(Path(p).stat().st_size for p in files)
        entries = len(files) + EXTRA_ENTRIES
        print(f"{len(files)} slices {args.size}x{args.size}, {total / 1e6:.0f} MB, {entries} entries, "
              f"{os.cpu_count()} cores")

        buf = bytearray(PIECE)
        view = memoryview(buf)
        pieces = []  # (file index, length): the same piece lengths every step sees
        for i, path in enumerate(files):
            size = Path(path).stat().st_size
            pieces += [(i, min(PIECE, size - off)) for off in range(0, size, PIECE)]
        key = os.urandom(32)
        pwd = PASSPHRASE.encode()

        def read() -> None:
            for path in files:
                with open(path, "rb", buffering=0) as fh:
                    while fh.readinto(buf):
                        pass

        def write() -> None:
            with open(tmp_path / "out.bin", "wb", buffering=0) as out:
                for _, n in pieces:
                    out.write(view[:n])
            os.unlink(tmp_path / "out.bin")

        def sha_files() -> None:
            for path in files:
                h = hashlib.sha256()
                with open(path, "rb", buffering=0) as fh:  # reading is counted in read(): subtracted below
                    while n := fh.readinto(buf):
                        h.update(view[:n])
                h.hexdigest()

        def pbkdf2() -> None:
            for _ in range(entries):
                _derive(pwd)

        out_buf = bytearray(PIECE + 16)  # update_into wants a block of headroom

        def per_entry(make):
            """Each piece with the object of its entry, a new one for each entry (as in the archive)."""
            current, obj = -1, None
            for i, n in pieces:
                if i != current:
                    current, obj = i, make()
                yield obj, view[:n]

        def aes() -> None:
            for enc, piece in per_entry(lambda: Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()):
                enc.update_into(piece, out_buf)

        def hmac_sha1() -> None:
            for mac, piece in per_entry(lambda: hmac.new(key, digestmod=hashlib.sha1)):
                mac.update(piece)

        def sha_archive() -> None:
            h = hashlib.sha256()
            for _, n in pieces:
                h.update(view[:n])
            h.hexdigest()

        def sevenzip() -> tuple[float, float]:
            target = tmp_path / "7z.zip"
            target.unlink(missing_ok=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            sevenzip_zip(target, files)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            target.unlink()
            return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        steps = {"read the files": read, "write the archive (no fsync)": write, "SHA-256 of every file": sha_files,
                 f"PBKDF2 x {entries} entries": pbkdf2, "AES-256-CTR (OpenSSL's counter)": aes,
                 "HMAC-SHA1": hmac_sha1, "SHA-256 of the archive": sha_archive}
        samples: dict[str, list[float]] = {name: [] for name in steps}
        seven_wall, seven_cpu = [], []
        read(), sevenzip()  # warm-up: page cache, first-use imports
        for _ in range(args.runs):
            for name, fn in steps.items():
                samples[name].append(cpu(fn))
            wall, used = sevenzip()
            seven_wall.append(wall)
            seven_cpu.append(used)

    med = {name: statistics.median(s) for name, s in samples.items()}
    med["SHA-256 of every file"] -= med["read the files"]  # that step reads the files again
    cores = os.cpu_count() or 1
    for name, value in med.items():
        print(f"  {name:34s} {value * 1000:7.1f} ms of CPU")
    need = sum(med.values())
    floor = need / cores
    sz_wall, sz_cpu = statistics.median(seven_wall), statistics.median(seven_cpu)
    print(f"  {'all of it':34s} {need * 1000:7.1f} ms of CPU -> floor {floor * 1000:.0f} ms on {cores} cores")
    print(f"7-Zip: {sz_wall * 1000:.0f} ms ({min(seven_wall) * 1000:.0f}-{max(seven_wall) * 1000:.0f}), "
          f"{sz_cpu * 1000:.0f} ms of CPU (median of {args.runs})")
    print(f"best possible throughput, Lightbox/7-Zip: {sz_wall / floor:.2f}x")
    for label, dropped in (("every file's SHA-256", ["SHA-256 of every file"]),
                           ("the archive's SHA-256", ["SHA-256 of the archive"]),
                           ("both SHA-256 passes", ["SHA-256 of every file", "SHA-256 of the archive"])):
        rest = need - sum(med[name] for name in dropped)
        print(f"  without {label:22s}: {sz_wall / (rest / cores):.2f}x")


if __name__ == "__main__":
    main()

"""Saturated throughput of the study page: this tree against an earlier commit (issue 18, goal 2x).

Not a test: prints requests per second and ratios. Each side runs in its own checkout (the peer
is a ``git worktree`` of ``--peer-ref``, 4a26c9f by default: the commit before issue 18), with its
own PostgreSQL database (created, migrated, dropped at the end), the same Redis, and gunicorn
with ``--workers`` sync workers on a loopback port. ``--clients`` threads, each signed in as its
own patient (password and second factor, a session made by Django's test client in that tree),
GET that patient's study page (``/studies/<id>/``: the audited read records a chained access
event) as fast as the server answers, for ``--seconds`` after a warm-up. Sides alternate for
``--rounds`` rounds; the load average is printed with each run, and the CPU time gunicorn's
workers spent per answered request (from /proc; PostgreSQL's own CPU is not in it): on a machine
that other work keeps busy, requests/s follow the CPU share the scheduler hands out, and CPU per
request is the steadier comparison.

Configurations: the peer with its production default (``DB_CONN_MAX_AGE`` 0: a connection per
request), the peer with ``DB_CONN_MAX_AGE=60`` (the part persistent connections alone give), and
this tree with its production default (60 s, health checks, sessions in Redis written once a
minute). Both run as ``LIGHTBOX_ENV=embedded`` with PostgreSQL and Redis, which differs from
production only in secrets and HTTPS settings.

    .venv/bin/python benchmarks/page_throughput.py [--peer-ref 4a26c9f] [--clients 16] [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")

# Run inside a checkout (cwd): migrate, then one signed-in patient with a study per client
# (``sys.argv[1]``): ``out`` holds [session cookie, study id] and ``made`` (patient, study) for
# each. SETUP prints {"cookie_name": ..., "sessions": out} as JSON; other scripts add to SIGNED_IN.
SIGNED_IN = r"""
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
sys.path.insert(0, os.getcwd())
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from accounts.models import AuthenticatorApp, User
from imaging.models import Patient, Study
call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)
out, made = [], []
for i in range(int(sys.argv[1])):
    user = User.objects.create_user(email=f"bench{i}@example.org", password="bench-password-123")
    device = AuthenticatorApp(user=user, name="bench", confirmed=True, encrypted_key="")
    device.set_key(os.urandom(20))
    device.save()
    patient = Patient.objects.create(issuer="BENCH", mrn=f"P{i}", name=f"Bench {i}", user=user)
    study = Study.objects.create(patient=patient, study_uid=f"1.2.826.0.1.3680043.10.77.{i}", description="CT CHEST",
                                 accession=f"A{i}")
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    out.append([client.cookies[settings.SESSION_COOKIE_NAME].value, study.pk])
    made.append((patient, study))
"""
SETUP = SIGNED_IN + """
print(json.dumps({"cookie_name": settings.SESSION_COOKIE_NAME, "sessions": out}))
"""


def proc_cpu(stat: Path, *, reaped: bool = False) -> tuple[str, float]:
    """A process's command name and CPU seconds (user + system) from its /proc stat file; with
    ``reaped``, also those of the children it has waited for. ("", 0.0) if it has ended."""
    try:
        name, rest = stat.read_text().rsplit(")", 1)
    except OSError:
        return "", 0.0
    fields = rest.split()
    ticks = sum(int(f) for f in fields[11:15 if reaped else 13])  # utime, stime[, cutime, cstime]
    return name.split("(", 1)[1], ticks / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(master: int) -> float:
    """User + system CPU of gunicorn's workers (the master's children), from /proc."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return 0.0
    return sum(proc_cpu(Path(f"/proc/{pid}/stat"))[1] for pid in children)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


class Side:
    """One tree on its own database: set up by ``setup`` (a script run in the tree that prints a
    JSON object with at least ``cookie_name`` and ``sessions``; the whole object is ``info``; its
    arguments are ``clients`` and ``setup_args``),
    served by gunicorn on demand (``server``)."""

    def __init__(self, label: str, tree: Path, db: str, extra_env: dict[str, str], clients: int, workers: int,
                 setup: str = SETUP, setup_args: tuple[str, ...] = ()):
        self.label, self.tree, self.db, self.workers = label, tree, db, workers
        self.data = Path(tempfile.mkdtemp(prefix=f"bench-pages-{db}-"))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LIGHTBOX_", "DATABASE_", "DB_", "REDIS_", "CELERY_"))},
            "LIGHTBOX_ENV": "embedded", "LIGHTBOX_DATA_DIR": str(self.data), "DATABASE_URL": f"{PG}/{db}",
            "REDIS_URL": REDIS, "CACHE_KEY_PREFIX": f"{db}-{os.getpid()}",  # nothing left from a run before
            "CELERY_BROKER_URL": REDIS, **extra_env,
        }
        _psql(f'DROP DATABASE IF EXISTS "{db}"')
        _psql(f'CREATE DATABASE "{db}"')
        out = subprocess.run([PYTHON, "-c", setup, str(clients), *setup_args], cwd=tree, env=self.env, check=True,  # noqa: S603
                             capture_output=True, text=True).stdout
        self.info = json.loads(out.strip().splitlines()[-1])
        self.cookie_name, self.sessions = self.info["cookie_name"], self.info["sessions"]

    @contextlib.contextmanager
    def server(self, env: dict[str, str] | None = None, log: str = "gunicorn.log"):
        """gunicorn on a free loopback port, ready when every worker has answered; yields (port,
        master pid). ``env`` adds to the side's environment (a second server with other settings)."""
        port = _free_port()
        proc = subprocess.Popen(  # noqa: S603
            [PYTHON, "-m", "gunicorn", "portal.wsgi", "--workers", str(self.workers), "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning", "--error-logfile", str(self.data / log)],
            cwd=self.tree, env={**self.env, **(env or {})},
        )
        try:
            # Ready when every worker has answered: one request per worker, all signed in.
            deadline = time.monotonic() + 120
            answered = 0
            while answered < 2 * self.workers and time.monotonic() < deadline:
                status = _get(port, self.cookie_name, *self.sessions[0])
                if status != 200 and status is not None:
                    raise RuntimeError(f"{self.label}: the study page answered {status}; see {self.data}/gunicorn.log")
                answered += status == 200
                if status is None:
                    time.sleep(0.2)
            yield port, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def drop(self) -> None:
        _psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        shutil.rmtree(self.data, ignore_errors=True)


def _get(port: int, cookie_name: str, cookie: str, study_id: int) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"/studies/{study_id}/", headers={"Cookie": f"{cookie_name}={cookie}", "Host": "localhost"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status
    except OSError:
        return None


def load(port: int, cookie_name: str, sessions: list, *, warmup: float, seconds: float,
         master: int = 0) -> tuple[float, int, float]:
    """Requests per second over ``seconds`` after ``warmup``, the number of non-200 answers, and
    the workers' CPU milliseconds per answered request over the same window."""
    start = time.monotonic()
    begin, end = start + warmup, start + warmup + seconds
    done: list[int] = []
    errors: list[int] = []

    def client(cookie: str, study_id: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        count = bad = 0
        path = f"/studies/{study_id}/"
        headers = {"Cookie": f"{cookie_name}={cookie}", "Host": "localhost"}
        while (now := time.monotonic()) < end:
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            if begin <= now:
                count += ok
                bad += not ok
        done.append(count)
        errors.append(bad)

    threads = [threading.Thread(target=client, args=(c, s)) for c, s in sessions]
    for t in threads:
        t.start()
    cpu = [0.0, 0.0]

    def sample() -> None:
        time.sleep(max(0.0, begin - time.monotonic()))
        cpu[0] = _cpu_seconds(master)
        time.sleep(max(0.0, end - time.monotonic()))
        cpu[1] = _cpu_seconds(master)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for t in threads:
        t.join()
    sampler.join()
    answered = sum(done)
    return answered / seconds, sum(errors), (cpu[1] - cpu[0]) * 1000 / max(answered, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-ref", default="4a26c9f")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    peer_tree = Path(tempfile.mkdtemp(prefix="bench-pages-peer-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(peer_tree), args.peer_ref],  # noqa: S603, S607
                   check=True, capture_output=True)
    sides: list[Side] = []
    try:
        print(f"Peer: {args.peer_ref} in {peer_tree}; {args.clients} clients, {args.workers} sync workers, "
              f"{args.seconds:.0f} s per run after {args.warmup:.0f} s warm-up", flush=True)
        sides = [
            Side(f"{args.peer_ref} (DB_CONN_MAX_AGE 0, its default)", peer_tree, "bench_h2_pages_peer", {},
                 args.clients, args.workers),
            Side(f"{args.peer_ref} with DB_CONN_MAX_AGE=60", peer_tree, "bench_h2_pages_peer60",
                 {"DB_CONN_MAX_AGE": "60"}, args.clients, args.workers),
            # This tree's production default (the embedded default keeps 0 for SQLite).
            Side("this tree (production defaults)", ROOT, "bench_h2_pages_ours", {"DB_CONN_MAX_AGE": "60"},
                 args.clients, args.workers),
        ]
        results: dict[str, list[float]] = {s.label: [] for s in sides}
        cpu: dict[str, list[float]] = {s.label: [] for s in sides}
        for round_ in range(args.rounds):
            for side in sides:
                with side.server() as (port, master):
                    rate, errors, ms = load(port, side.cookie_name, side.sessions, warmup=args.warmup,
                                            seconds=args.seconds, master=master)
                results[side.label].append(rate)
                cpu[side.label].append(ms)
                print(f"  round {round_ + 1}: {side.label}: {rate:.1f} req/s, {errors} errors, "
                      f"workers' CPU {ms:.1f} ms/request, load average {os.getloadavg()[0]:.2f}", flush=True)
        peer = statistics.median(results[sides[0].label])
        peer_cpu = statistics.median(cpu[sides[0].label])
        print()
        print(f"| Study page, {args.clients} clients, {args.workers} workers (median of {args.rounds}) | req/s | ratio "
              "| workers' CPU per request | requests per CPU second, ratio |")
        print("| --- | --- | --- | --- | --- |")
        for side in sides:
            rate = statistics.median(results[side.label])
            ms = statistics.median(cpu[side.label])
            print(f"| {side.label} | {rate:.1f} | {rate / peer:.2f}x | {ms:.1f} ms | {peer_cpu / ms:.2f}x |")
    finally:
        for side in sides:
            side.drop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(peer_tree)],  # noqa: S603, S607
                       check=False, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())

"""Browsing patients' pages with and without 4 systems sending access events (issue 18, goal:
page p95 with ingest at most 1.5x without).

Not a test: prints latencies and ratios. gunicorn (sync workers: ``--workers`` for the pages plus
one per sender, as the README's deployment notes ask, since a batch waiting for its ingest slot
holds its worker) serves this tree with its production defaults on its own PostgreSQL database
(created and dropped) and Redis. ``--patients`` signed-in patients (password and second factor,
each with a study and an access log of ``--history`` events) browse as people do: each opens a
page (home, the study, the access log, the consent page, in turn), reads it for a random 1 to 4 s
(``--think``, 2.5 s on average) and opens the next, for the whole run. Windows of ``--seconds``
follow one another, in reversed order every other round:

- no ingest;
- ``--senders`` systems (threads, each with a service token of its own) posting batches of 500
  events about the same patients, each batch in its own order, back to back, through
  ``POST /api/v1/audit/events`` as production sees it (rate limit, ingest slots,
  ``AUDIT_INGEST_NICE``, all as configured: by default one slot fewer than the cores, nice 10);
- the same senders posting to a second gunicorn on the same database whose batches are worked at
  the pages' own priority (``AUDIT_INGEST_NICE=0``), the pages staying where they are;
- a control: one process keeping a core busy, no database (what losing a core costs the pages,
  whatever takes it).

A window starts once the previous one's batches have all been answered, so no page is counted in
the wrong window. The senders' bodies are built before the run (one per sender, each batch given
new event ids by a string replace), so their own work on this machine is a socket write and read.

Prints, for each window: pages answered, p50/p95/max overall and per page, pages not answered 200,
the ratio to the window without ingest, the events recorded per second, and the CPU the web
workers and PostgreSQL used; then every batch not answered 200.

    .venv/bin/python benchmarks/site_under_ingest.py [--patients 50] [--senders 4] [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from access_log_ingest import pct  # noqa: E402 - benchmarks/ is not a package
from page_throughput import ROOT, SIGNED_IN, Side, _cpu_seconds, proc_cpu  # noqa: E402

BATCH = 500
PAGES = ("home", "study", "access log", "consent")

# Added to page_throughput's SIGNED_IN (a signed-in patient with a study per browsing client):
# ``history`` access events for each patient and a service token per sender (``sys.argv[2:4]``).
# Prints the session cookie name, the sessions ([cookie, study id]), the tokens and the
# patients' [issuer, MRN, accession] as JSON.
SETUP = SIGNED_IN + r"""
import datetime as dt
from django.utils import timezone
from accounts.services import service_account_create
from audit.ingest import events_ingest
senders, history = int(sys.argv[2]), int(sys.argv[3])
patients = [[patient.issuer, patient.mrn, study.accession] for patient, study in made]
# Each patient's access log: ``history`` events from the hospital over the past months.
now = timezone.now()
for i, (issuer, mrn, accession) in enumerate(patients):
    events_ingest(sender="bench-history", source="api", default_actor_type="clinician", default_organization="Bench Hospital",
                  events=[{"source_event_id": f"h{i}-{k}", "occurred_at": (now - dt.timedelta(hours=7 * k + 1)).isoformat(),
                           "patient": {"issuer": issuer, "mrn": mrn}, "accession": accession,
                           "actor": {"type": "clinician", "name": f"Dr Bench {k % 12}", "role": "Radiologist"},
                           "purpose": "treatment", "action": "view"} for k in range(history)])
tokens = [service_account_create(name=f"bench-sender-{s}", organization="Bench EHR", scopes=["audit:write"])[1]
          for s in range(senders)]
print(json.dumps({"cookie_name": settings.SESSION_COOKIE_NAME, "sessions": out, "tokens": tokens,
                  "patients": patients}))
"""


def _body(patients: list, seed: int) -> str:
    """One batch of 500 events about ``patients`` in this sender's own order; ``@RUN@`` in each
    event id is replaced per batch, so every batch is new to the server."""
    rng = random.Random(seed)
    events = []
    for i in range(BATCH):
        issuer, mrn, accession = rng.choice(patients)
        events.append({
            "source_event_id": f"@RUN@-{i}",
            "occurred_at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00",
            "patient": {"issuer": issuer, "mrn": mrn},
            "accession": accession,
            "actor": {"type": "clinician", "name": f"Dr Sender {i % 40}", "role": "Radiologist"},
            "purpose": "treatment",
            "action": "view",
        })
    return json.dumps({"events": events})


class Senders:
    """Systems posting batches back to back while switched on, to the port they are switched on to."""

    def __init__(self, tokens: list[str], patients: list) -> None:
        self.tokens = tokens
        self.bodies = [_body(patients, seed) for seed in range(len(tokens))]
        self.port: int | None = None  # None: switched off
        self.stopping = False
        self.busy = 0  # batches in flight
        self.changed = threading.Condition()
        self.accepted = 0
        self.bad: list[int | str] = []
        self.threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in range(len(tokens))]
        for thread in self.threads:
            thread.start()

    def _run(self, s: int) -> None:
        conns: dict[int, http.client.HTTPConnection] = {}  # one per server (reopened after each answer)
        headers = {"Authorization": f"Bearer {self.tokens[s]}", "Content-Type": "application/json",
                   "Host": "localhost"}
        n = 0
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.port is not None or self.stopping)
                if self.stopping:
                    return
                port = self.port
                self.busy += 1
            n += 1
            body = self.bodies[s].replace("@RUN@", f"{os.getpid()}-{s}-{n}").encode()
            conn = conns.setdefault(port, http.client.HTTPConnection("127.0.0.1", port, timeout=120))
            try:
                conn.request("POST", "/api/v1/audit/events", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                outcome: int | str = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                outcome = type(exc).__name__
            with self.changed:
                if outcome == 200:
                    self.accepted += json.loads(answer)["accepted"]
                else:
                    self.bad.append(outcome)
                self.busy -= 1
                self.changed.notify_all()

    def switch_on(self, port: int) -> None:
        with self.changed:
            self.port = port
            self.changed.notify_all()

    def switch_off(self) -> None:
        """Stop sending and wait until every batch in flight has been answered."""
        with self.changed:
            self.port = None
            self.changed.wait_for(lambda: self.busy == 0)

    def close(self) -> None:
        with self.changed:
            self.port, self.stopping = None, True
            self.changed.notify_all()
        for thread in self.threads:
            thread.join(timeout=130)


class Patients:
    """Signed-in patients browsing for the whole run; every page's (start, page, seconds, status)."""

    def __init__(self, port: int, cookie_name: str, sessions: list, think: tuple[float, float]) -> None:
        self.port, self.cookie_name, self.think = port, cookie_name, think
        self.samples: list[tuple[float, str, float, int | str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c, sid, i), daemon=True)
                        for i, (c, sid) in enumerate(sessions)]
        for thread in self.threads:
            thread.start()

    def _run(self, cookie: str, study_id: int, i: int) -> None:
        rng = random.Random(i)
        paths = dict(zip(PAGES, ("/", f"/studies/{study_id}/", "/access-log/", "/consent/"), strict=True))
        headers = {"Cookie": f"{self.cookie_name}={cookie}", "Host": "localhost"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        self.stop.wait(rng.uniform(0, self.think[1]))  # arrive spread out
        k = i
        while not self.stop.is_set():
            page = PAGES[k % len(PAGES)]
            k += 1
            started = time.monotonic()
            try:
                conn.request("GET", paths[page], headers=headers)
                response = conn.getresponse()
                response.read()
                status: int | str = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status = type(exc).__name__
            with self.lock:
                self.samples.append((started, page, time.monotonic() - started, status))
            self.stop.wait(rng.uniform(*self.think))

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=130)


def _postgres_cpu() -> float:
    """User + system CPU seconds of every process named ``postgres`` (the server on this
    machine: its backends, WAL writer, checkpointer), and of those that have ended (counted in
    the postmaster's children's time), from /proc."""
    return sum(seconds for name, seconds in (proc_cpu(stat, reaped=True) for stat in Path("/proc").glob("[0-9]*/stat"))
               if name == "postgres")


def _burn(stop) -> None:
    """Keep one core busy (no database) until ``stop`` is set: the control window."""
    while not stop.is_set():
        sum(range(10000))


@dataclass
class Tally:
    """What one kind of window added up to over the rounds."""

    web: float = 0.0  # CPU seconds of the web workers (both servers)
    pg: float = 0.0  # CPU seconds of PostgreSQL
    seconds: float = 0.0  # the windows' length
    accepted: int = 0  # events recorded
    sending: float = 0.0  # from switching the senders on to their last answer


def _row(label: str, rows: list[tuple[str, float, int | str]]) -> tuple[float, float]:
    """Print a table row of pages' latencies; return their p50 and p95 (NaN for no pages: a
    window too short for every page to be opened)."""
    if not rows:
        print(f"| {label} | 0 | - | - | - | |")
        return float("nan"), float("nan")
    times = [s for _p, s, _st in rows]
    bad = sorted({str(st) for _p, _s, st in rows if st != 200})
    not_200 = sum(st != 200 for _p, _s, st in rows)
    p50, p95 = pct(times, 0.5), pct(times, 0.95)
    print(f"| {label} | {len(rows)} | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | {max(times) * 1000:.0f} ms "
          f"| {not_200} {bad if bad else ''} |")
    return p50, p95


KINDS = {
    "alone": "without ingest",
    "ingest": "with {senders} senders",
    "ingest, nice 0": "with {senders} senders, ingest at nice 0 (AUDIT_INGEST_NICE=0)",
    "busy": "control: 1 process keeping a core busy",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--workers", type=int, default=5, help="gunicorn workers for the pages (one more per sender).")
    parser.add_argument("--history", type=int, default=200, help="Access events each patient already has.")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"))
    parser.add_argument("--seconds", type=float, default=20, help="Length of each window.")
    parser.add_argument("--warmup", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    workers = args.workers + args.senders
    side = Side("this tree (production defaults)", ROOT, "bench_h2_site", {"DB_CONN_MAX_AGE": "60"},
                args.patients, workers, setup=SETUP, setup_args=(str(args.senders), str(args.history)))
    labels = {kind: label.format(senders=args.senders) for kind, label in KINDS.items()}
    try:
        print(f"{args.patients} patients reading each page {args.think[0]:g}-{args.think[1]:g} s, {args.senders} senders "
              f"of {BATCH}-event batches, gunicorn {workers} sync workers, windows of {args.seconds:g} s, "
              f"{args.rounds} rounds; AUDIT_INGEST_NICE {os.environ.get('AUDIT_INGEST_NICE', 'default')}; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        # The pages' server, and a second one on the same database whose ingest runs at the pages'
        # priority, for the "nice 0" windows (the senders post there; the pages stay put).
        with side.server() as (port, master), \
                side.server(env={"AUDIT_INGEST_NICE": "0"}, log="gunicorn-nice0.log") as (port0, master0):
            patients = Patients(port, side.cookie_name, side.sessions, tuple(args.think))
            senders = Senders(side.info["tokens"], side.info["patients"])
            windows: list[tuple[str, float, float]] = []
            tally = {kind: Tally() for kind in KINDS}
            try:
                time.sleep(args.warmup)
                for round_ in range(args.rounds):
                    kinds = list(KINDS) if round_ % 2 == 0 else list(reversed(KINDS))
                    for kind in kinds:
                        burner, stop = None, multiprocessing.get_context("fork").Event()
                        if kind == "busy":
                            burner = multiprocessing.get_context("fork").Process(target=_burn, args=(stop,))
                            burner.start()
                        accepted = senders.accepted
                        if kind.startswith("ingest"):
                            senders.switch_on(port0 if kind == "ingest, nice 0" else port)
                        start = time.monotonic()
                        web, pg = _cpu_seconds(master) + _cpu_seconds(master0), _postgres_cpu()
                        time.sleep(args.seconds)
                        end = time.monotonic()
                        done = tally[kind]
                        done.web += _cpu_seconds(master) + _cpu_seconds(master0) - web
                        done.pg += _postgres_cpu() - pg
                        done.seconds += end - start
                        senders.switch_off()  # pages until every batch is answered are not counted
                        done.accepted += senders.accepted - accepted
                        done.sending += time.monotonic() - start
                        if burner:
                            stop.set()
                            burner.join()
                        windows.append((kind, start, end))
                        print(f"  round {round_ + 1}: {kind}, load average {os.getloadavg()[0]:.2f}", flush=True)
            finally:
                patients.close()
                senders.close()
        by_kind: dict[str, list[tuple[str, float, int | str]]] = {kind: [] for kind in KINDS}
        for started, page, seconds, status in patients.samples:
            for kind, start, end in windows:
                if start <= started < end:
                    by_kind[kind].append((page, seconds, status))
        print()
        print(f"| {args.patients} patients browsing | pages | p50 | p95 | max | not 200 |")
        print("| --- | --- | --- | --- | --- | --- |")
        summary = {}
        for kind in KINDS:
            summary[kind] = _row(f"{labels[kind]}, every page", by_kind[kind])
            for page in PAGES:
                _row(f"{labels[kind]}, {page}", [row for row in by_kind[kind] if row[0] == page])
        print()
        a50, a95 = summary["alone"]
        print("| window | pages p50, p95 against without ingest | events/s recorded | CPU: web workers, PostgreSQL (cores) |")
        print("| --- | --- | --- | --- |")
        for kind in KINDS:
            (k50, k95), done = summary[kind], tally[kind]
            rate = f"{done.accepted / done.sending:.0f}" if done.accepted else "-"
            print(f"| {labels[kind]} | {k50 / a50:.2f}x, {k95 / a95:.2f}x | {rate} | "
                  f"{done.web / done.seconds:.2f}, {done.pg / done.seconds:.2f} |")
        print()
        print(f"Goal: pages' p95 with {args.senders} senders at most 1.5x without: "
              f"{summary['ingest'][1] / a95:.2f}x. Batches not answered 200: {len(senders.bad)} "
              f"{sorted(set(map(str, senders.bad))) if senders.bad else ''}")
    finally:
        side.drop()


if __name__ == "__main__":
    sys.exit(main())

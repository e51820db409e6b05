"""Start a Celery worker for Lightbox: ``python -m portal.worker [options]``.

    python -m portal.worker -Q exports --max-memory-per-child 120000   # an export worker
    python -m portal.worker -Q celery                                  # everything else

The same worker as ``celery -A portal worker``, started through the app's own ``Worker`` class.
Written by hand because the ``celery`` command imports its interactive shells (click-repl,
prompt_toolkit, pygments: 246 modules) before it starts a worker, and they stay loaded for the
worker's life: 8.6 MB of every worker process, which the export worker's memory target (under
100 MB, benchmarks/export_memory.py) cannot spare. Only the options Lightbox uses are
offered; anything else still works through ``celery -A portal worker``.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m portal.worker", description=__doc__.split("\n")[0])
    parser.add_argument("-Q", "--queues", default="celery,exports,pixels",
                        help="comma-separated queues to consume (default: celery,exports,pixels)")
    parser.add_argument("-P", "--pool", default="prefork", choices=["prefork", "solo", "threads"])
    parser.add_argument("-c", "--concurrency", type=int, default=None, help="pool size (default: CPU count)")
    parser.add_argument("-n", "--hostname", default=None, help="node name, %%h is the host (default: celery@%%h)")
    parser.add_argument("-l", "--loglevel", default="INFO")
    parser.add_argument("--max-memory-per-child", type=int, default=None, metavar="KIB",
                        help="replace a pool process after a task that left it above this resident size")
    parser.add_argument("--max-tasks-per-child", type=int, default=None)
    parser.add_argument("-B", "--beat", action="store_true", help="run the beat scheduler in this worker")
    parser.add_argument("-s", "--schedule", default=None, help="beat's schedule file (with --beat)")
    args = parser.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if not [q for q in args.queues.split(",") if q.strip()]:
        parser.error("--queues names no queue")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from celery.utils.nodenames import default_nodename, host_format

    from portal.celery import app

    worker = app.Worker(
        hostname=host_format(default_nodename(args.hostname)),
        queues=[q.strip() for q in args.queues.split(",") if q.strip()],
        pool_cls=args.pool,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        max_memory_per_child=args.max_memory_per_child,
        max_tasks_per_child=args.max_tasks_per_child,
        beat=args.beat,
        schedule_filename=args.schedule,
        # One worker here need not hear the others: mingle and gossip are for clusters that
        # share revocations and clock skew, and the filesystem transport has no broadcast.
        without_mingle=True,
        without_gossip=True,
    )
    worker.start()
    return worker.exitcode or 0


if __name__ == "__main__":
    sys.exit(main())

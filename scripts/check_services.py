"""Fail fast, with a clear message, when the test suite's PostgreSQL or Redis is unreachable."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import psycopg
import redis


def main() -> int:
    problems = []
    db_url = os.environ["DATABASE_URL"]
    try:
        with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        u = urlparse(db_url)
        problems.append(
            f"PostgreSQL is not reachable at {u.hostname}:{u.port or 5432} ({exc.__class__.__name__}: {str(exc).strip()[:200]}).\n"
            "  Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        url = os.environ[name]
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except Exception as exc:  # noqa: BLE001
            u = urlparse(url)
            problems.append(
                f"Redis ({name}) is not reachable at {u.hostname}:{u.port or 6379} ({exc.__class__.__name__}).\n"
                '  Start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
            )
            break
    if problems:
        print("make test needs PostgreSQL and Redis on their standard local ports:\n", file=sys.stderr)
        for problem in problems:
            print(" - " + problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

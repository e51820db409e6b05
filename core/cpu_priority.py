"""Run CPU-heavy work that no page waits for at a lower CPU priority than the pages.

Why by hand: nothing in Django, gunicorn or Celery lowers the priority of one request's work and
gives it back after. A process cannot raise its priority again once lowered (that needs
CAP_SYS_NICE or a raised RLIMIT_NICE), but on Linux the nice value belongs to each thread, so the
work runs on a thread of its own that is lowered once, while the request's thread waits for it.
That thread uses the request's own database connections (handed over the way Django's live
server test thread shares them), so transactions, session advisory locks and persistent
connections are exactly as they would be inline.

In a sync worker (gunicorn's default, the one Lightbox deploys) the waiting thread holds nothing
else up. With threaded workers, the lowered thread holds the GIL while it runs Python, so other
requests in the same process would run at its pace: use sync workers, or nice 0.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections
from django.utils import timezone, translation

T = TypeVar("T")

# One lowered thread per process and nice value, made on first use (after gunicorn forks its
# workers, so never inherited without its thread: the pid is checked).
_executors: dict[tuple[int, int], ThreadPoolExecutor] = {}
_guard = threading.Lock()


def _lower(nice: int) -> None:
    # PRIO_PROCESS with a thread id sets that thread's nice value alone (Linux).
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _executor(nice: int) -> ThreadPoolExecutor:
    key = (os.getpid(), nice)
    with _guard:
        if key not in _executors:
            _executors[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nice{nice}",
                                                 initializer=_lower, initargs=(nice,))
        return _executors[key]


def run_niced(fn: Callable[..., T], /, *args: object, nice: int, **kwargs: object) -> T:
    """``fn(*args, **kwargs)`` at CPU nice value ``nice`` (0 to 19; 19 yields the most), on the
    caller's database connections, language, time zone and context variables; returns its result or
    raises its exception. The caller's thread waits, using no CPU. ``nice=0``, or any system but
    Linux (where a nice value is the whole process's), runs it inline."""
    if not 0 <= nice <= 19:
        raise ValueError(f"nice must be between 0 and 19, not {nice}")
    if nice == 0 or sys.platform != "linux":
        return fn(*args, **kwargs)
    shared = [connections[alias] for alias in connections]
    for conn in shared:
        conn.inc_thread_sharing()
    # asgiref keeps Django's active language and time zone per thread even in contextvars, so
    # they are handed over by name; other context variables go with a copy of the context.
    where = (translation.get_language(), timezone.get_current_timezone())
    try:
        return _executor(nice).submit(contextvars.copy_context().run, _as_caller, shared, where, fn, args, kwargs).result()
    finally:
        for conn in shared:
            conn.dec_thread_sharing()


def _as_caller(shared: list, where: tuple, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    for conn in shared:
        connections[conn.alias] = conn
    try:
        with translation.override(where[0]), timezone.override(where[1]):
            return fn(*args, **kwargs)
    finally:
        for conn in shared:
            del connections[conn.alias]  # the thread keeps no connection of its own between calls

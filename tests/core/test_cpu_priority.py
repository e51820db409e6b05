"""Work no page waits for runs at a lower CPU priority, on the caller's connection (core.cpu_priority).

With 4 systems sending access events, 50 browsing patients' pages were 1.6-1.9x slower at p95 with
the batches worked at the pages' own priority: as slow as beside any process keeping a core busy
(benchmarks/site_under_ingest.py). Worked at nice 10, the same batches cost the pages 1.2-1.4x.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import zoneinfo

import pytest
from django.db import connection, connections
from django.utils import timezone, translation

from core import cpu_priority
from core.cpu_priority import run_niced
from tests.factories import PatientFactory


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_work_runs_at_the_nice_value_asked_and_the_caller_keeps_its_own():
    caller = _nice()
    seen = run_niced(lambda: (_nice(), threading.get_native_id()), nice=12)
    assert seen[0] == 12
    assert seen[1] != threading.get_native_id()
    assert _nice() == caller


def test_nice_0_runs_inline():
    assert run_niced(threading.get_native_id, nice=0) == threading.get_native_id()


@pytest.mark.parametrize("nice", [-1, 20])
def test_a_nice_value_out_of_range_is_refused(nice):
    with pytest.raises(ValueError, match="between 0 and 19"):
        run_niced(lambda: None, nice=nice)


def test_the_result_and_the_exception_come_back_to_the_caller():
    assert run_niced(lambda a, b=0: a + b, 2, b=3, nice=5) == 5

    class Refused(Exception):
        pass

    def refuse():
        raise Refused("no")

    with pytest.raises(Refused, match="no"):
        run_niced(refuse, nice=5)


@pytest.mark.django_db
def test_the_work_uses_the_callers_connection_and_sees_its_transaction():
    # The test runs inside a transaction that is never committed: a connection of the thread's
    # own would not see this patient, nor share the caller's session (its advisory locks).
    patient = PatientFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    def look():
        from imaging.models import Patient

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return Patient.objects.filter(pk=patient.pk).exists(), cursor.fetchone()[0], connection.in_atomic_block

    assert run_niced(look, nice=10) == (True, pid, True)
    # Handed back: the caller's thread alone uses it again, and the lowered thread keeps none.
    assert connection.allow_thread_sharing is False
    assert cpu_priority._executor(10).submit(connections.all, initialized_only=True).result() == []


def test_the_callers_language_and_time_zone_go_with_the_work():
    with translation.override("fr"), timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
        assert run_niced(lambda: (translation.get_language(), str(timezone.get_current_timezone())), nice=10) \
            == ("fr", "Europe/Paris")


def _in_child(queue) -> None:
    queue.put(run_niced(_nice, nice=9))


def test_a_forked_process_gets_a_lowered_thread_of_its_own():
    # gunicorn forks its workers: a thread made before the fork does not exist in the child,
    # and waiting for it there would hang.
    run_niced(_nice, nice=9)  # the parent's thread exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 9

"""The Celery app's safety settings (STYLE.md "Celery", docs/security.md §18)."""

from __future__ import annotations

import pytest

from portal.celery import app


def test_celery_accepts_json_only_and_acks_late():
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_broker_comes_from_the_environment():
    # make test points CELERY_BROKER_URL at Redis; the embedded default is the filesystem.
    assert app.conf.broker_url.startswith("redis://127.0.0.1:6379/")


def test_packaging_has_its_own_queue_and_the_rest_stays_on_the_default():
    from exports.tasks import package_export, purge_expired

    assert app.amqp.router.route({}, package_export.name)["queue"].name == "exports"
    assert app.amqp.router.route({}, purge_expired.name)["queue"].name == "celery"


def test_the_worker_entry_point_reads_its_options():
    from portal.worker import parse

    args = parse(["-Q", "exports", "--pool", "solo", "--max-memory-per-child", "120000", "-n", "x@%h"])
    assert (args.queues, args.pool, args.max_memory_per_child, args.hostname) == ("exports", "solo", 120000, "x@%h")
    assert parse([]).queues == "celery,exports,pixels"  # what `make run` needs: one worker for all


@pytest.mark.parametrize("argv, message", [
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["-Q", " , "], "--queues names no queue"),
    (["--pool", "gevent"], "invalid choice"),
    (["--max-memory-per-child", "lots"], "invalid int value"),
])
def test_the_worker_entry_point_refuses_bad_options_with_a_reason(argv, message, capsys):
    from portal.worker import parse

    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_worker_started_by_the_entry_point_never_loads_the_celery_shells(tmp_path):
    """The reason portal/worker.py exists: `celery worker` keeps prompt_toolkit loaded."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, portal.worker as w\n"
        "from portal.celery import app\n"
        "def stop(sender, **kw):\n"
        "    sys.__stdout__.write(f\"SHELLS {'prompt_toolkit' in sys.modules}\\n\"); sys.__stdout__.flush()\n"
        "    sender.stop()\n"
        "from celery.signals import worker_ready\n"
        "worker_ready.connect(stop, weak=False)\n"
        "w.main(['--pool', 'solo', '-Q', 'probe-only', '--loglevel', 'WARNING'])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2],  # noqa: S603
                         capture_output=True, text=True, timeout=60)
    assert "SHELLS False" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]

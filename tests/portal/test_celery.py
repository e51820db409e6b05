"""The Celery app's safety settings (STYLE.md "Celery", SECURITY.md 18)."""

from __future__ import annotations

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

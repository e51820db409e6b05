from __future__ import annotations

import pytest
from django.core.cache import cache

from portal.celery import HEARTBEAT_KEY
from portal.celery import app as celery_app
from tests.conftest import wait_for


@pytest.mark.django_db
def test_healthz_is_public_and_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["workers"] == {"ok": False, "error": "no heartbeat"}
    assert body["ok"] is False


@pytest.mark.django_db
def test_healthz_reports_a_broker_outage_but_stays_up(client):
    original = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get("/healthz")
    finally:
        celery_app.conf.broker_write_url = original
    assert response.status_code == 200
    assert response.json()["broker"]["ok"] is False


@pytest.mark.worker
def test_healthz_sees_a_live_worker_and_notices_when_it_stops(client, celery_worker_process):
    body = client.get("/healthz").json()
    assert body["workers"]["ok"] is True
    assert body["ok"] is True
    celery_worker_process.stop()
    assert cache.get(HEARTBEAT_KEY) is None
    assert client.get("/healthz").json()["workers"]["ok"] is False


@pytest.mark.worker
def test_a_stale_heartbeat_is_reported(client, celery_worker_process):
    celery_worker_process.stop()
    cache.set(HEARTBEAT_KEY, {"hostname": "gone", "at": "2020-01-01T00:00:00+00:00"}, 60)
    body = wait_for(lambda: client.get("/healthz").json(), what="healthz")
    assert body["workers"]["ok"] is False
    assert body["workers"]["last_heartbeat_seconds_ago"] > 60

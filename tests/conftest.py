from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.models import User
from tests.factories import PASSWORD, AuthenticatorAppFactory, PatientFactory, UserFactory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness only slows the suite; what is hashed is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_cache(settings):
    """Rate-limit counters live in Redis; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


def _patient_user(**kwargs) -> User:
    user = UserFactory(**kwargs)
    PatientFactory(user=user)
    AuthenticatorAppFactory(user=user)
    return user


@pytest.fixture
def patient(db) -> User:
    """A patient with a linked record and a confirmed authenticator app."""
    return _patient_user()


@pytest.fixture
def other_patient(db) -> User:
    return _patient_user()


@pytest.fixture
def officer(db) -> User:
    user = UserFactory(role=User.Role.PRIVACY_OFFICER)
    AuthenticatorAppFactory(user=user)
    return user


@pytest.fixture
def unverified_user(db) -> User:
    """A patient who has a factor but whose session will only have passed the password."""
    return _patient_user()


def login_password_only(client: Client, user: User) -> Client:
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return client


def login_verified(client: Client, user: User) -> Client:
    login_password_only(client, user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = user.authenticatorapp_set.filter(confirmed=True).first().persistent_id
    session.save()
    return client


def reauthenticate(client: Client) -> None:
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.content[:500]


@pytest.fixture
def patient_client(client, patient) -> Client:
    return login_verified(client, patient)


@pytest.fixture
def password_only_client(client, unverified_user) -> Client:
    return login_password_only(client, unverified_user)


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds.

    Waiting on an observable condition (not a fixed sleep) keeps tests fast and deterministic.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class WorkerProcess:
    """A real ``celery worker`` process on the test broker (Redis) and the test database."""

    def __init__(self, log_path) -> None:
        import os
        import subprocess
        import sys
        from pathlib import Path

        from django.conf import settings

        db = settings.DATABASES["default"]
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.worker", "--pool=solo", "--loglevel=INFO", "-Q", "celery,exports",
             "--hostname=test@%h"],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        from django.core.cache import cache

        from portal.celery import HEARTBEAT_KEY

        wait_for(lambda: self.proc.poll() is not None or cache.get(HEARTBEAT_KEY), what="the worker's heartbeat")
        assert self.proc.poll() is None, f"worker exited; log:\n{open(self.log_path).read()[-3000:]}"

    def stop(self, sig=None) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            self.proc.wait(timeout=60)
        self._log.close()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """Start a real worker for one test (function scope: tests that kill it stay isolated)."""
    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
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

    def __init__(self, log_path, queues: str = "celery,exports") -> None:
        import os
        import subprocess
        import sys
        from pathlib import Path

        from django.conf import settings

        db = settings.DATABASES["default"]
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
        # Its emails in its log, where the tests count them (the embedded default is a file mailbox).
        env["EMAIL_URL"] = "console://"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.escalated = False  # stop() had to SIGKILL it
        # A session (process group) of its own: a SIGKILL reaches anything the worker started
        # (Tesseract, 7-Zip), and a Ctrl-C at the terminal reaches only pytest.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.worker", "--pool=solo", "--loglevel=INFO", "-Q", queues,
             "--hostname=test@%h"],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        from django.core.cache import cache

        from portal.celery import HEARTBEAT_KEY

        wait_for(lambda: self.proc.poll() is not None or cache.get(HEARTBEAT_KEY), what="the worker's heartbeat")
        assert self.proc.poll() is None, f"worker exited; log:\n{open(self.log_path).read()[-3000:]}"

    def stop(self, sig=None, *, grace: float = 10.0) -> None:
        """Send ``sig`` (SIGTERM: Celery's warm shutdown, which waits for the running task), and
        SIGKILL the worker's process group if it is still there ``grace`` seconds later: a task
        stuck in a failing test must not hang the suite."""
        import os
        import signal
        import subprocess

        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig or signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.escalated = True
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own group (start_new_session)
                    self.proc.wait(timeout=30)
        finally:
            self._log.close()


def purge_test_broker() -> int:
    """Empty the test broker's queues, and the tasks a killed worker took without acknowledging
    (acks_late), before a worker test: otherwise an earlier test's leftover message would be
    delivered to this test's worker. Returns how many messages were waiting. Uses kombu's own
    queue purge on the test app's connection; the unacked keys are the Redis transport's."""
    from portal.celery import app

    queues = {app.conf.task_default_queue, *(route["queue"] for route in app.conf.task_routes.values())}
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        purged = sum(channel.queue_purge(queue) or 0 for queue in sorted(queues))
        client = getattr(channel, "client", None)
        if client is not None:  # the Redis transport: a killed worker's unacknowledged messages
            purged += client.hlen(channel.unacked_key)
            client.delete(channel.unacked_key, channel.unacked_index_key)
    return purged


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """Start a real worker for one test (function scope: tests that kill it stay isolated), on
    an empty test broker."""
    purge_test_broker()
    worker = WorkerProcess(tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def gunicorn_server(log_path: Path, workers: int = 1, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The production server (scripts/run.sh: gunicorn, sync workers) on the test database, in a
    process of its own, with ``env`` added to its environment; yields its base URL and process."""
    db = settings.DATABASES["default"]
    env = dict(os.environ, DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}", **env)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",  # noqa: S603
                                 "--workers", str(workers)], cwd=settings.BASE_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            def up() -> bool:
                assert proc.poll() is None, Path(log_path).read_text()[-2000:]
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
                return False

            wait_for(up, what="gunicorn to listen")
            yield f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

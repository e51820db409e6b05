"""Production mode refuses to start without its secrets and passes ``check --deploy``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "SIGNING_KEY_FILE", "ALLOWED_HOSTS", "DEBUG"}}
    env.update(
        LIGHTBOX_ENV="production",
        LIGHTBOX_DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="x7" * 30 + "-production-secret",
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        SIGNING_KEY_FILE=str(key_file),
        ALLOWED_HOSTS="lightbox.example.org",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        EMAIL_URL="submission://lightbox:secret@smtp.example.org:587",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_with_production_settings(production_env):
    result = _manage(production_env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY", "SIGNING_KEY_FILE", "ALLOWED_HOSTS", "EMAIL_URL"])
def test_production_refuses_to_start_without_its_secrets(production_env, missing):
    del production_env[missing]
    result = _manage(production_env, "check")
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


def test_production_sends_email_to_the_console_only_when_told_so(production_env):
    """Issue 17, found 8: an unset EMAIL_URL used to send reset links to stdout in production."""
    probe = "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    result = _manage({**production_env, "EMAIL_URL": "console://"}, "shell", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "django.core.mail.backends.console.EmailBackend"
    result = _manage({**production_env, "EMAIL_URL": ""}, "check")
    assert result.returncode != 0 and "EMAIL_URL must be set" in result.stderr
    result = _manage(production_env, "shell", "-c", probe)
    assert result.stdout.splitlines()[-1] == "django.core.mail.backends.smtp.EmailBackend", result.stderr


def test_production_refuses_a_weak_secret_key_and_debug(production_env):
    result = _manage({**production_env, "SECRET_KEY": "django-insecure-short"}, "check")
    assert result.returncode != 0 and "SECRET_KEY must be a random string" in result.stderr
    result = _manage({**production_env, "DEBUG": "1"}, "check")
    assert result.returncode != 0 and "DEBUG must be off" in result.stderr


def test_a_mistyped_boolean_stops_the_process(production_env):
    result = _manage({**production_env, "DEBUG": "maybe"}, "check")
    assert result.returncode != 0 and "DEBUG must be one of" in result.stderr


def test_production_needs_redis(production_env):
    """docs/security.md §3: without REDIS_URL production fell back to a per-host file cache."""
    result = _manage({k: v for k, v in production_env.items() if k != "REDIS_URL"}, "check")
    assert result.returncode != 0 and "REDIS_URL must be set" in result.stderr


@pytest.mark.parametrize(
    ("name", "url", "refused"),
    [
        ("REDIS_URL", "redis://cache.internal:6379/0", True),
        ("REDIS_URL", "rediss://cache.internal:6380/0", True),
        ("REDIS_URL", "redis://:s3cret@cache.internal:6379/0", False),
        ("REDIS_URL", "redis://[::1]:6379/0", False),
        ("CELERY_BROKER_URL", "redis://broker.internal:6379/1", True),
        ("CELERY_BROKER_URL", "amqp://guest@rabbit.internal//", True),
        ("CELERY_BROKER_URL", "amqp://lightbox:s3cret@rabbit.internal//", False),
        ("CELERY_BROKER_URL", "redis://localhost:6379/1", False),
    ],
)
def test_production_refuses_a_cache_or_broker_anyone_could_use(production_env, name, url, refused):
    """docs/security.md §18: a broker or cache off this machine must require a password."""
    result = _manage({**production_env, name: url}, "check")
    if refused:
        assert result.returncode != 0 and f"{name} names" in result.stderr and "without a password" in result.stderr
    else:
        assert result.returncode == 0, result.stderr

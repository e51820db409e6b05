"""`make run` (issue 19, item 14): every start prints working recovery codes and an activation
code, and in the embedded default every email, from the web server or the worker, lands in one
file mailbox under the data directory, which the start-up text names."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import RecoveryCode, User
from core import crypto
from portal import demo

ROOT = Path(__file__).resolve().parents[2]
# What scripts/run.sh leaves out of the environment: the embedded default is what it gets.
SERVICE_VARIABLES = {"LIGHTBOX_ENV", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMAIL_URL"}


def _run_demo_data() -> str:
    out = StringIO()
    call_command("make_demo_data", stdout=out)
    return out.getvalue()


def _printed_recovery_codes(output: str) -> dict[str, list[str]]:
    prefix = "  recovery codes for "
    return {
        line[len(prefix):].split(": ")[0]: line.split(": ", 1)[1].split(", ")
        for line in output.splitlines()
        if line.startswith(prefix)
    }


@pytest.mark.django_db
def test_a_restart_prints_working_recovery_codes_and_an_activation_code():
    _run_demo_data()
    second = _run_demo_data()  # the restart

    printed = _printed_recovery_codes(second)
    assert set(printed) == {demo.PATIENT["email"], demo.OFFICER_EMAIL, demo.ADMIN_EMAIL}
    for email, codes in printed.items():
        stored = set(RecoveryCode.objects.filter(device__user=User.objects.get(email=email)).values_list("code_hash", flat=True))
        assert {crypto.keyed_hash(code.replace("-", ""), purpose="recovery") for code in codes} == stored
    assert "activation code" in second


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES | {"LIGHTBOX_DATA_DIR"}}
    env["LIGHTBOX_DATA_DIR"] = str(data_dir)
    return env


# The web server's entry point (gunicorn loads portal.wsgi) and the worker's (portal.worker
# starts portal.celery's app, which loads Django through its fixups), each sending one email.
PROCESSES = {
    "web": "import portal.wsgi",
    "worker": "from portal.celery import app; app.loader.import_default_modules()",
}


def test_web_server_and_worker_write_email_to_one_mailbox(tmp_path):
    for name, start in PROCESSES.items():
        script = f"{start}\nfrom django.core.mail import send_mail\nsend_mail('from the {name}', 'body', None, ['a@example.org'])"
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_embedded_env(tmp_path),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "from the" not in result.stdout  # not on the console
    mailbox = tmp_path / "mail"
    texts = "".join(path.read_text() for path in mailbox.iterdir())
    assert "Subject: from the web" in texts and "Subject: from the worker" in texts


@pytest.mark.django_db
def test_the_start_up_text_says_where_the_mailbox_is(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    assert f"{tmp_path / 'mail'}/" in _run_demo_data()

"""No passwords, codes or patient names in application logs or mailed text (docs/security.md §14).

Every log record from every logger is captured at DEBUG (and, for good measure, Django's SQL
debug log) while a patient signs up with an activation code, confirms the email, enrols an
authenticator, signs in with a TOTP code and with a recovery code, gets codes wrong, and resets
the password. The console email backend's output is captured too.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import AuthenticatorApp, RecoveryCodeSet
from accounts.services import activation_code_issue, normalize_activation_code
from accounts.sessions import PENDING_AUTHENTICATOR
from portal import demo
from tests.factories import PatientFactory, totp_code

PASSWORD = "quiet lantern over 9 hills"
NEW_PASSWORD = "seven copper kettles sing"
EMAIL = "log.hygiene@example.net"
SQL_LOGGER = "django.db.backends"


@pytest.fixture
def every_log_record(caplog):
    """caplog at DEBUG on the root logger (as with ``LOG_LEVEL=DEBUG``), on the loggers that do not
    propagate to it, and on Django's SQL log with the debug cursor on (as with ``DEBUG=True``).

    Named loggers keep their configured levels: Django pins ``django`` to INFO, which keeps the
    template engine's DEBUG records (they carry the whole template context) out of any log.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=SQL_LOGGER)
    extra_handlers = []
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.addHandler(caplog.handler)
            extra_handlers.append(logger)
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = forced
    for logger in extra_handlers:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def console_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


class Journey:
    """A browser going through the account flows, remembering every secret it typed or saw."""

    def __init__(self, capsys) -> None:
        self.client = Client()
        self.capsys = capsys
        self.console = ""
        self.secrets: dict[str, str] = {}
        self.codes: list[str] = []  # 6-digit TOTP codes (checked with digit boundaries)

    def mail_output(self) -> str:
        self.console += self.capsys.readouterr().out
        return self.console

    def link(self, prefix: str) -> str:
        matches = re.findall(r"https?://[^/\s]+(" + re.escape(prefix) + r"[^\s]+)", self.mail_output())
        assert matches, self.console[-2000:]
        return matches[-1]

    def login(self, password: str = PASSWORD):
        response = self.client.post("/accounts/login/", {"login": EMAIL, "password": password})
        assert response.status_code == 302, response.content[:500]
        return response

    def logout(self) -> None:
        self.client.post("/accounts/logout/")
        assert "_auth_user_id" not in self.client.session

    def submit_code(self, url: str, code: str, **extra):
        self.codes.append(code) if code.isdigit() else self.secrets.setdefault(f"typed {code}", code)
        return self.client.post(url, {"code": code, **extra})


def _a_while_later() -> None:
    """django-otp refuses any code for a second after a wrong one; move that failure into the past
    (as if the person took a moment to retype) instead of sleeping."""
    past = timezone.now() - dt.timedelta(minutes=1)
    for model in (AuthenticatorApp, RecoveryCodeSet):
        model.objects.filter(throttling_failure_timestamp__isnull=False).update(throttling_failure_timestamp=past)


def _secret_forms(value: str) -> set[str]:
    """The ways a code could show up: as typed, without separators, upper and lower case."""
    bare = re.sub(r"[^0-9A-Za-z]", "", value)
    return {value, value.upper(), value.lower(), bare, bare.upper(), bare.lower()}


def _record_texts(records) -> list[tuple[str, str]]:
    texts = []
    for record in records:
        parts = [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        texts.append((record.name, "\n".join(parts)))
    return texts


def test_account_flows_log_no_secrets(db, every_log_record, console_email, capsys):
    patient = PatientFactory(birth_date=dt.date(1980, 1, 31))
    code = activation_code_issue(patient=patient)
    journey = Journey(capsys)
    journey.secrets.update({"password": PASSWORD, "new password": NEW_PASSWORD, "activation code": code})
    guessed_code = "ZZZZ-YYYY-XXXX"
    journey.secrets["guessed activation code"] = guessed_code

    # Sign up: one wrong code, then the right one typed sloppily.
    c = journey.client
    signup = {"birth_date": "1980-01-31", "email": EMAIL, "password1": PASSWORD, "password2": PASSWORD}
    assert c.post("/accounts/signup/", {**signup, "activation_code": guessed_code}).status_code == 200
    assert c.post("/accounts/signup/", {**signup, "activation_code": code.lower().replace("-", " ")}).status_code == 302

    # Confirm the email from the console output, then sign in.
    confirm = journey.link("/accounts/confirm-email/")
    assert c.get(confirm).status_code == 200
    assert c.post(confirm).status_code == 302
    assert c.post("/accounts/login/", {"login": EMAIL, "password": "wrong password 123"}).status_code == 200
    journey.login()

    # Enrol an authenticator: a wrong code first, then the right one.
    assert c.get("/account/2fa/setup/").status_code == 200
    # The key has no row until a code confirms it: it waits in the session, encrypted.
    device = AuthenticatorApp(encrypted_key=c.session[PENDING_AUTHENTICATOR]["key"])
    journey.secrets["totp secret"] = device.secret_b32
    wrong = f"{(int(totp_code(device)) + 500000) % 1000000:06d}"
    assert journey.submit_code("/account/2fa/setup/", wrong, name="Phone").status_code == 200
    _a_while_later()
    enrolled = journey.submit_code("/account/2fa/setup/", totp_code(device), name="Phone")
    assert enrolled.status_code == 200
    recovery_codes = enrolled.context["codes"]
    assert recovery_codes
    for i, recovery in enumerate(recovery_codes):
        journey.secrets[f"recovery code {i}"] = recovery
    assert c.get("/").status_code == 200
    journey.logout()

    # Sign in with the next TOTP code, then with a recovery code.
    journey.login()
    assert journey.submit_code("/account/2fa/", totp_code(device, steps=1)).status_code == 302
    assert c.get("/").status_code == 200
    journey.logout()
    journey.login()
    assert journey.submit_code("/account/2fa/", "aaaaa-bbbbb").status_code == 200
    _a_while_later()
    assert journey.submit_code("/account/2fa/", recovery_codes[0]).status_code == 302
    journey.logout()

    # Reset the password from the emailed link and sign in with a second recovery code.
    assert c.post("/accounts/password/reset/", {"email": EMAIL}).status_code == 302
    landing = c.get(journey.link("/accounts/password/reset/key/"))
    assert landing.status_code == 302
    assert c.post(landing["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 302
    journey.login(NEW_PASSWORD)
    assert journey.submit_code("/account/2fa/", recovery_codes[1].upper()).status_code == 302
    journey.logout()

    # Wrong codes until the rate limit answers 429 (Django logs 4xx responses).
    journey.login(NEW_PASSWORD)
    status = None
    for _ in range(10):
        status = journey.submit_code("/account/2fa/", wrong).status_code
        if status == 429:
            break
    assert status == 429

    # --- what was written ----------------------------------------------------------------------
    texts = _record_texts(every_log_record.records)
    assert texts, "nothing was logged: the capture is not working"
    assert any(name == SQL_LOGGER for name, _ in texts), "the SQL debug log was not captured"
    assert any(name == "django.request" for name, _ in texts), "the 429 warning was not captured"
    outputs = [*texts, ("console email", journey.mail_output())]
    assert "/accounts/confirm-email/" in outputs[-1][1]  # the mail really went through the console

    for label, secret in journey.secrets.items():
        for form in _secret_forms(secret):
            for source, text in outputs:
                assert form not in text, f"{label} appears in {source}"
    for totp in set(journey.codes):
        # Digit boundaries (and not after a '.', as in SQL timestamps' microseconds) so a code is
        # not "found" inside a longer number.
        pattern = re.compile(rf"(?<![\d.]){totp}(?!\d)")
        for source, text in outputs:
            assert not pattern.search(text), f"TOTP code appears in {source}"
    # Patient names stay out of application logs (the SQL debug log, off in production, aside).
    for source, text in outputs:
        if source != SQL_LOGGER:
            assert patient.name not in text, f"patient name appears in {source}"


def test_template_engine_debug_records_are_never_emitted(caplog):
    """Django's template engine logs every missing variable at DEBUG *with the whole template
    context*, which on the enrolment and recovery-code pages holds the TOTP secret and the
    recovery codes. Even with the root logger at DEBUG (``LOG_LEVEL=DEBUG``) those records must
    not pass."""
    caplog.set_level(logging.DEBUG)

    assert logging.getLogger("django.template").getEffectiveLevel() > logging.DEBUG


def test_management_commands_log_no_secrets(db, every_log_record, tmp_path):
    """The commands print their secret once to stdout by design; nothing goes to the logs."""
    PatientFactory(mrn="LOG-1")
    out = StringIO()
    call_command("issue_activation_code", "LOG-1", stdout=out)
    code = out.getvalue().strip()
    password_file = tmp_path / "pw.txt"
    password_file.write_text(PASSWORD)
    call_command(
        "create_privacy_officer", "log.officer@example.net", "--name", "Log Officer", "--password-file", str(password_file), stdout=StringIO()
    )
    demo_out = StringIO()
    call_command("make_demo_data", stdout=demo_out)
    recovery = re.findall(r"\b[a-z0-9]{5}-[a-z0-9]{5}\b", demo_out.getvalue())
    assert recovery

    texts = _record_texts(every_log_record.records)
    secrets = {code, normalize_activation_code(code), PASSWORD, demo.DEMO_PASSWORD, *recovery}
    for source, text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret appears in {source}"

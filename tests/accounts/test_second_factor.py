"""The second factor: enrolment, verification, single use, rate limits, secrets at rest, passkeys.

docs/security.md §1-4 and 6. Everything runs against the real stack (PostgreSQL, Redis, django-otp,
allauth); the only thing a test picks is which code to type.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
import time
from importlib import import_module
from urllib.parse import urlparse

import cbor2
import pytest
from allauth.core.exceptions import RateLimited
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.middleware import OTPMiddleware
from django_otp_webauthn.models import WebAuthnCredential

from accounts import services
from accounts.models import AuthenticatorApp, RecoveryCode, RecoveryCodeSet, SignInEvent, User
from accounts.sessions import PENDING_AUTHENTICATOR, session_mark_verified
from portal.actors import actor_for_request
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory, actor_of, totp_code

ENROL_URL = "/account/2fa/setup/"
VERIFY_URL = "/account/2fa/"
REAUTH_URL = "/accounts/reauthenticate/"
LOGIN_URL = "/accounts/login/"
PASSKEY_BEGIN_URL = "/account/passkeys/registration/begin/"
PASSKEY_COMPLETE_URL = "/account/passkeys/registration/complete/"
PASSKEY_AUTH_BEGIN_URL = "/account/passkeys/authentication/begin/"
PASSKEY_AUTH_COMPLETE_URL = "/account/passkeys/authentication/complete/"


# --- helpers ---------------------------------------------------------------------------------


def _patient_without_factor() -> User:
    """A patient who has just signed up: a password, a linked record, no second factor yet."""
    user = UserFactory()
    PatientFactory(user=user)
    return user


def _patient_with_app() -> User:
    user = _patient_without_factor()
    AuthenticatorAppFactory(user=user)
    return user


def _app(user: User) -> AuthenticatorApp:
    return AuthenticatorApp.objects.get(user=user, confirmed=True)


def _step(device: AuthenticatorApp) -> int:
    return int(time.time()) // device.step


def _wrong_code(device: AuthenticatorApp) -> str:
    """A well-formed code that is not valid anywhere near now (so it is wrong for certain)."""
    near = {totp_code(device, steps) for steps in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(100000, 1000000, 7919)) if c not in near)


def _let_device_backoff_pass(device: AuthenticatorApp) -> None:
    """django-otp's own per-device back-off (1, 2, 4, 8, 16 s after each failure) would refuse
    even the right code; move its clock 30 seconds on so only the account limit is left."""
    AuthenticatorApp.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - dt.timedelta(seconds=30)
    )


def _pending(client: Client) -> AuthenticatorApp:
    """The authenticator the enrolment page shows: its key waits in the session, encrypted, and
    has no row until a code confirms it."""
    return AuthenticatorApp(encrypted_key=client.session[PENDING_AUTHENTICATOR]["key"])


def _plant_pending(client: Client, user: User) -> AuthenticatorApp:
    """A key in ``client``'s session as if the enrolment page had shown it (for sessions the page
    refuses to show one to)."""
    key = services.authenticator_enrolment_start(actor=actor_of(user))
    session = client.session
    session[PENDING_AUTHENTICATOR] = {"user": user.pk, "key": key}
    session.save()
    return AuthenticatorApp(encrypted_key=key)


def _recovery_codes(user: User) -> list[str]:
    return services.recovery_codes_generate(actor=actor_of(user), user=user)


def _is_verified(client: Client) -> bool:
    """Behavioural check: only a verified session reaches the patient's home page."""
    return client.get("/").status_code == 200


def _post_code(client: Client, code: str, **extra):
    return client.post(VERIFY_URL, {"code": code}, **extra)


def _code_error(response) -> bool:
    return response.status_code == 200 and bool(response.context["form"].errors.get("code"))


def _verify_at_offset(steps: int):
    """Sign a fresh patient in with a password and submit the code ``steps`` periods away.

    The server judges the code against its own clock; if a 30-second boundary passes while the
    request runs, the offset it saw differs from ``steps``. That attempt is discarded and the
    whole thing repeats with a fresh account (at most once in practice). No sleeping.
    """
    while True:
        cache.clear()
        user = _patient_with_app()
        device = _app(user)
        client = login_password_only(Client(), user)
        before = _step(device)
        response = _post_code(client, totp_code(device, steps))
        if _step(device) == before:
            return response, client, user


# --- 1. Enrolment ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_password_only_user_without_factor_is_sent_to_enrolment(client):
    login_password_only(client, _patient_without_factor())

    response = client.get("/")

    assert response.status_code == 302
    assert urlparse(response["Location"]).path == ENROL_URL


@pytest.mark.django_db
def test_enrolment_page_shows_qr_code_and_secret(client):
    user = _patient_without_factor()
    login_password_only(client, user)

    response = client.get(ENROL_URL)

    assert response.status_code == 200
    device = _pending(client)
    content = response.content.decode()
    assert "<svg" in content  # the QR code, inline
    # The secret as text for typing by hand (possibly grouped with spaces).
    assert device.secret_b32 in content.replace(" ", "")
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_enrolment_page_reuses_the_pending_secret(client):
    """Reloading the page must not change the key the user is busy scanning (the QR code)."""
    user = _patient_without_factor()
    login_password_only(client, user)
    first = client.get(ENROL_URL)
    second = client.get(ENROL_URL)

    assert first.context["secret"] == second.context["secret"] == _pending(client).secret_b32
    assert first.context["qr_svg"] == second.context["qr_svg"]


@pytest.mark.django_db
def test_enrolment_page_get_creates_no_device_and_a_confirmed_code_creates_one(client):
    """GET never writes: the key waits in the session until its first code is confirmed; then
    exactly one device exists, confirmed, with the key the page showed."""
    user = _patient_without_factor()
    login_password_only(client, user)
    page = client.get(ENROL_URL)
    client.get(ENROL_URL)

    assert page.status_code == 200
    assert not AuthenticatorApp.objects.filter(user=user).exists()
    pending = _pending(client)

    response = client.post(ENROL_URL, {"code": totp_code(pending), "name": "Phone"})

    assert response.status_code == 200 and len(response.context["codes"]) == 10
    device = AuthenticatorApp.objects.get(user=user)
    assert device.confirmed and device.bin_key == pending.bin_key
    assert PENDING_AUTHENTICATOR not in client.session  # used up with the key


@pytest.mark.django_db
def test_enrolment_with_correct_code_verifies_session_and_shows_recovery_codes_once(client):
    user = _patient_without_factor()
    login_password_only(client, user)
    client.get(ENROL_URL)
    pending = _pending(client)

    response = client.post(ENROL_URL, {"code": totp_code(pending), "name": "My phone"})

    assert response.status_code == 200
    codes = response.context["codes"]
    assert len(codes) == settings.RECOVERY_CODE_COUNT == 10
    assert len(set(codes)) == 10
    content = response.content.decode()
    assert all(code in content for code in codes)
    device = AuthenticatorApp.objects.get(user=user)
    assert device.confirmed and device.name == "My phone"
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert _is_verified(client)
    assert SignInEvent.objects.get(user=user).method == SignInEvent.Method.ENROLMENT
    assert RecoveryCode.objects.filter(device__user=user).count() == 10

    # Shown once: neither the enrolment page nor the security page shows them again.
    again = client.get(ENROL_URL)
    assert again.status_code == 302 and urlparse(again["Location"]).path == REAUTH_URL
    security = client.get("/account/security/").content.decode()
    assert not any(code in security for code in codes)


@pytest.mark.django_db
def test_enrolment_with_wrong_code_shows_error_and_stays_unverified(client):
    user = _patient_without_factor()
    login_password_only(client, user)
    client.get(ENROL_URL)
    device = _pending(client)

    response = client.post(ENROL_URL, {"code": _wrong_code(device), "name": "Phone"})

    assert _code_error(response)
    assert not AuthenticatorApp.objects.filter(user=user).exists()
    assert _pending(client).bin_key == device.bin_key  # the page keeps the same key to try again
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert not RecoveryCode.objects.filter(device__user=user).exists()
    home = client.get("/")
    assert home.status_code == 302 and urlparse(home["Location"]).path == ENROL_URL


@pytest.mark.django_db
def test_password_only_user_with_a_factor_cannot_enrol_another(client, unverified_user):
    """Adding a factor with only the password would bypass the existing one."""
    login_password_only(client, unverified_user)

    get = client.get(ENROL_URL)
    pending = _plant_pending(client, unverified_user)
    post = client.post(ENROL_URL, {"code": totp_code(pending), "name": "Attacker"})

    assert get.status_code == 302 and urlparse(get["Location"]).path == VERIFY_URL
    assert post.status_code == 302 and urlparse(post["Location"]).path == VERIFY_URL
    assert AuthenticatorApp.objects.filter(user=unverified_user).count() == 1  # only the one they had
    assert not _is_verified(client)


@pytest.mark.django_db
def test_adding_an_authenticator_needs_recent_reauthentication(patient_client, patient):
    get = patient_client.get(ENROL_URL)

    assert get.status_code == 302 and urlparse(get["Location"]).path == REAUTH_URL
    # The new secret was not even created, let alone shown.
    assert PENDING_AUTHENTICATOR not in patient_client.session
    assert AuthenticatorApp.objects.filter(user=patient).count() == 1

    pending = _plant_pending(patient_client, patient)
    post = patient_client.post(ENROL_URL, {"code": totp_code(pending), "name": "Tablet"})

    assert post.status_code == 302 and urlparse(post["Location"]).path == REAUTH_URL
    assert AuthenticatorApp.objects.filter(user=patient).count() == 1


@pytest.mark.django_db
def test_adding_an_authenticator_after_reauthentication_signs_out_other_sessions(patient_client, patient):
    other = login_verified(Client(), patient)
    assert other.get("/").status_code == 200
    original = _app(patient).pk
    _recovery_codes(patient)
    recovery_hashes = set(RecoveryCode.objects.filter(device__user=patient).values_list("code_hash", flat=True))
    reauthenticate(patient_client)

    page = patient_client.get(ENROL_URL)
    assert page.status_code == 200
    pending = _pending(patient_client)
    response = patient_client.post(ENROL_URL, {"code": totp_code(pending), "name": "Tablet"})

    assert response.status_code == 302 and urlparse(response["Location"]).path == "/account/security/"
    added = AuthenticatorApp.objects.exclude(pk=original).get(user=patient)
    assert added.confirmed and added.name == "Tablet" and added.bin_key == pending.bin_key
    assert AuthenticatorApp.objects.filter(user=patient, confirmed=True).count() == 2
    # Existing recovery codes are kept (only first enrolment makes new ones).
    assert set(RecoveryCode.objects.filter(device__user=patient).values_list("code_hash", flat=True)) == recovery_hashes
    assert _is_verified(patient_client)
    lost = other.get("/")
    assert lost.status_code == 302 and urlparse(lost["Location"]).path == LOGIN_URL


# --- 2. Verification -------------------------------------------------------------------------


@pytest.mark.django_db
def test_password_only_user_with_factor_is_sent_to_verification(password_only_client):
    response = password_only_client.get("/account/security/")

    assert response.status_code == 302
    assert response["Location"] == f"{VERIFY_URL}?next=%2Faccount%2Fsecurity%2F"


@pytest.mark.django_db
def test_verify_page_sends_user_without_factor_to_enrolment(client):
    login_password_only(client, _patient_without_factor())

    response = client.get(VERIFY_URL)

    assert response.status_code == 302 and urlparse(response["Location"]).path == ENROL_URL


@pytest.mark.django_db
def test_totp_code_verifies_session(password_only_client, unverified_user):
    device = _app(unverified_user)
    assert not _is_verified(password_only_client)

    response = _post_code(password_only_client, totp_code(device))

    assert response.status_code == 302 and response["Location"] == "/"
    assert password_only_client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert _is_verified(password_only_client)
    event = SignInEvent.objects.get(user=unverified_user)
    assert event.method == SignInEvent.Method.TOTP
    device.refresh_from_db()
    assert device.last_used_at is not None


@pytest.mark.django_db
def test_code_with_spaces_is_accepted(password_only_client, unverified_user):
    code = totp_code(_app(unverified_user))

    response = _post_code(password_only_client, f" {code[:3]} {code[3:]} ")

    assert response.status_code == 302
    assert _is_verified(password_only_client)


@pytest.mark.django_db
def test_wrong_code_is_refused(password_only_client, unverified_user):
    response = _post_code(password_only_client, _wrong_code(_app(unverified_user)))

    assert _code_error(response)
    assert not _is_verified(password_only_client)
    assert not SignInEvent.objects.filter(user=unverified_user).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["12345²", "１２３４５６", "abc", "1234567", ""])
def test_malformed_codes_are_refused_without_error(password_only_client, code):
    """Unicode digits pass ``str.isdigit`` but are not codes; they must not crash the page."""
    response = _post_code(password_only_client, code)

    assert response.status_code == 200
    assert response.context["form"].errors.get("code")
    assert not _is_verified(password_only_client)


@pytest.mark.django_db
def test_replayed_code_fails_in_a_new_session(client, unverified_user):
    """RFC 6238 §5.2: a code is accepted once, even by a fresh sign-in."""
    code = totp_code(_app(unverified_user))
    login_password_only(client, unverified_user)
    assert _post_code(client, code).status_code == 302
    client.post("/accounts/logout/")
    login_password_only(client, unverified_user)

    response = _post_code(client, code)

    assert _code_error(response)
    assert not _is_verified(client)


@pytest.mark.django_db
@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_code_within_one_step_works(steps):
    response, client, _ = _verify_at_offset(steps)

    assert response.status_code == 302
    assert _is_verified(client)


@pytest.mark.django_db
@pytest.mark.parametrize("steps", [-3, -2, 2, 3])
def test_code_more_than_one_step_away_fails(steps):
    response, client, _ = _verify_at_offset(steps)

    assert _code_error(response)
    assert not _is_verified(client)


@pytest.mark.django_db
def test_recovery_code_works_once(client, unverified_user):
    codes = _recovery_codes(unverified_user)
    login_password_only(client, unverified_user)

    first = _post_code(client, codes[0])

    assert first.status_code == 302
    assert _is_verified(client)
    assert SignInEvent.objects.get(user=unverified_user).method == SignInEvent.Method.RECOVERY_CODE
    assert RecoveryCode.objects.filter(device__user=unverified_user).count() == 9

    client.post("/accounts/logout/")
    login_password_only(client, unverified_user)
    second = _post_code(client, codes[0])

    assert _code_error(second)
    assert not _is_verified(client)


@pytest.mark.django_db
def test_recovery_code_is_accepted_as_typed_from_paper(password_only_client, unverified_user):
    codes = _recovery_codes(unverified_user)

    response = _post_code(password_only_client, codes[3].upper().replace("-", " "))

    assert response.status_code == 302
    assert _is_verified(password_only_client)


@pytest.mark.django_db
def test_another_users_recovery_code_does_not_work(password_only_client, other_patient):
    codes = _recovery_codes(other_patient)

    response = _post_code(password_only_client, codes[0])

    assert _code_error(response)
    assert RecoveryCode.objects.filter(device__user=other_patient).count() == 10


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/account/security/", "/account/security/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("http://evil.example/account/security/", "/"),
        ("", "/"),
    ],
)
def test_next_redirect_stays_on_this_host(password_only_client, unverified_user, next_url, expected):
    response = password_only_client.post(
        VERIFY_URL, {"code": totp_code(_app(unverified_user)), "next": next_url}
    )

    assert response.status_code == 302
    assert response["Location"] == expected


@pytest.mark.django_db
def test_next_that_is_not_a_url_does_not_break_sign_in(password_only_client, unverified_user):
    """A ``next`` like ``foo`` is on this host but names no view: the sign-in still completes."""
    response = password_only_client.post(VERIFY_URL, {"code": totp_code(_app(unverified_user)), "next": "foo"})

    assert response.status_code == 302
    assert urlparse(response["Location"]).netloc == ""
    assert _is_verified(password_only_client)


@pytest.mark.django_db
def test_next_from_the_gate_survives_the_verify_page(password_only_client, unverified_user):
    gate = password_only_client.get("/account/security/")
    page = password_only_client.get(gate["Location"])
    assert page.status_code == 200
    assert page.context["next"] == "/account/security/"

    response = password_only_client.post(
        gate["Location"], {"code": totp_code(_app(unverified_user)), "next": page.context["next"]}
    )

    assert response["Location"] == "/account/security/"


@pytest.mark.django_db
def test_verified_session_visiting_verify_goes_to_safe_next(patient_client):
    response = patient_client.get(VERIFY_URL, {"next": "https://evil.example/"})

    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_verify_and_enrol_reject_other_methods(password_only_client):
    assert password_only_client.put(VERIFY_URL).status_code == 405
    assert password_only_client.delete(ENROL_URL).status_code == 405


# --- 3. Parallel submits ---------------------------------------------------------------------


def _password_only_request(user: User, *, path: str = VERIFY_URL, ip: str = "127.0.0.1"):
    """A request as it reaches a view: the session of a fresh password-only sign-in, the user,
    and django-otp's ``is_verified`` (the real middlewares' work, without a view around it)."""
    client = login_password_only(Client(), user)
    request = RequestFactory().post(path, REMOTE_ADDR=ip)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(
        client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    request.user = get_user(request)
    OTPMiddleware(lambda r: None)(request)
    request.actor = actor_for_request(request)
    assert request.user.is_authenticated and not request.user.is_verified()
    return request


def _verify_as_the_view(request, token: str):
    """What the verification view does with one submit: the service checks the code as the
    request's Actor, then the session is marked verified."""
    device = services.second_factor_verify(actor=request.actor, token=token)
    session_mark_verified(request, device)
    return device


def _race(requests, attempt, results: list | None = None) -> list:
    """Run ``attempt(request)`` for every request at the same moment, one thread each. Each
    outcome is appended to ``results`` as its thread ends (a failure is the exception's name)."""
    barrier = threading.Barrier(len(requests))
    results = [] if results is None else results
    lock = threading.Lock()

    def run(request) -> None:
        try:
            barrier.wait()
            outcome = attempt(request)
        except (services.InvalidCode, RateLimited, PermissionError) as exc:
            # PermissionError: a late enrolment submit sees the factor its twin just confirmed.
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - report anything else as a test failure
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_submits_of_one_code_succeed_exactly_once():
    user = _patient_with_app()
    device = _app(user)
    requests = [_password_only_request(user) for _ in range(20)]
    code = totp_code(device)

    results = _race(requests, lambda r: _verify_as_the_view(r, code))

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    successes = [r for r in results if not isinstance(r, str)]
    assert len(successes) == 1, results
    assert len(results) - len(successes) == 19
    assert successes[0].pk == device.pk
    assert SignInEvent.objects.filter(user=user).count() == 1
    verified = [r for r in requests if r.session.get(DEVICE_ID_SESSION_KEY)]
    assert len(verified) == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_submits_queue_on_the_device_row_and_succeed_once():
    """The same race made deterministic: the test holds the device row while the 20 submits
    arrive, and lets go only once every one of them is waiting on it in PostgreSQL. Without the
    row lock in the service each would read the unused code and all 20 would succeed."""
    user = _patient_with_app()
    device = _app(user)
    requests = [_password_only_request(user) for _ in range(20)]
    code = totp_code(device)
    outcome: list = []

    with transaction.atomic():
        AuthenticatorApp.objects.select_for_update().get(pk=device.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            holder = cursor.fetchone()[0]
        runner = threading.Thread(
            target=_race, args=(requests, lambda r: _verify_as_the_view(r, code), outcome)
        )
        runner.start()
        deadline = time.monotonic() + 60
        waiting = 0
        # Every submit is either queued on the row or already refused (by the rate limiter).
        while waiting + len(outcome) < 20:
            assert time.monotonic() < deadline, f"only {waiting} submits reached the row"
            with connection.cursor() as cursor:
                # Inside a transaction PostgreSQL would keep answering from its first snapshot.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                # Queued behind the holder or behind an earlier waiter: either way, not finished.
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> %s AND cardinality(pg_blocking_pids(pid)) > 0",
                    [holder],
                )
                waiting = cursor.fetchone()[0]
        assert waiting >= 10  # enough of them really met at the row for the test to mean something
    runner.join()

    assert not [r for r in outcome if isinstance(r, Exception)], outcome
    assert len([r for r in outcome if not isinstance(r, str)]) == 1, outcome
    assert SignInEvent.objects.filter(user=user).count() == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_submits_of_one_recovery_code_succeed_exactly_once():
    user = _patient_with_app()
    codes = _recovery_codes(user)
    requests = [_password_only_request(user) for _ in range(10)]

    results = _race(requests, lambda r: _verify_as_the_view(r, codes[0]))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len([r for r in results if not isinstance(r, str)]) == 1, results
    assert RecoveryCode.objects.filter(device__user=user).count() == 9


@pytest.mark.django_db(transaction=True)
def test_parallel_enrolment_confirmations_succeed_exactly_once():
    user = _patient_without_factor()
    key = services.authenticator_enrolment_start(actor=actor_of(user))
    requests = [_password_only_request(user, path=ENROL_URL) for _ in range(10)]
    code = totp_code(AuthenticatorApp(encrypted_key=key))

    results = _race(
        requests,
        lambda r: services.authenticator_enrolment_confirm(
            actor=r.actor, pending_key=key, token=code, name="Phone",
            session_verified=r.user.is_verified(), session_key=r.session.session_key,
        ),
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    successes = [r for r in results if not isinstance(r, str)]
    assert len(successes) == 1, results
    device, codes = successes[0]
    assert len(codes) == 10
    assert RecoveryCode.objects.filter(device__user=user).count() == 10
    assert AuthenticatorApp.objects.filter(user=user, confirmed=True).count() == 1


# --- 4. Rate limits --------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_codes_are_limited_per_account(password_only_client, unverified_user):
    """5 wrong codes per 5 minutes per account (ACCOUNT_RATE_LIMITS["mfa_code"])."""
    assert "5/5m/user" in settings.ACCOUNT_RATE_LIMITS["mfa_code"]
    device = _app(unverified_user)
    for _ in range(5):
        assert _code_error(_post_code(password_only_client, _wrong_code(device)))
    _let_device_backoff_pass(device)

    response = _post_code(password_only_client, totp_code(device))

    assert response.status_code == 429
    assert not _is_verified(password_only_client)
    device.refresh_from_db()
    assert device.last_t == -1  # the right code was not even checked, so not used up


@pytest.mark.django_db
def test_account_limit_follows_the_account_not_the_session(unverified_user):
    device = _app(unverified_user)
    for _ in range(5):
        client = login_password_only(Client(), unverified_user)
        assert _code_error(_post_code(client, _wrong_code(device), REMOTE_ADDR="192.0.2.1"))
    _let_device_backoff_pass(device)

    fresh = login_password_only(Client(), unverified_user)
    response = _post_code(fresh, totp_code(device), REMOTE_ADDR="192.0.2.99")

    assert response.status_code == 429


@pytest.mark.django_db
def test_wrong_codes_are_limited_per_ip_across_accounts():
    """20 wrong codes a minute from one address, whichever accounts they are for; a forged
    X-Forwarded-For does not make each attempt look like a new address."""
    assert "20/m/ip" in settings.ACCOUNT_RATE_LIMITS["mfa_code"]
    assert settings.ALLAUTH_TRUSTED_PROXY_COUNT == 0
    attacker = "198.51.100.7"
    attempt = 0
    for _ in range(4):
        user = _patient_with_app()
        client = login_password_only(Client(), user)
        for _ in range(5):  # stays within each account's own limit
            attempt += 1
            response = _post_code(
                client, _wrong_code(_app(user)), REMOTE_ADDR=attacker, HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}"
            )
            assert _code_error(response)

    victim = _patient_with_app()
    blocked = login_password_only(Client(), victim)
    response = _post_code(
        blocked, totp_code(_app(victim)), REMOTE_ADDR=attacker, HTTP_X_FORWARDED_FOR="203.0.113.250"
    )
    assert response.status_code == 429

    # The limit is the address's, not the account's: from elsewhere the victim signs in fine.
    elsewhere = login_password_only(Client(), victim)
    response = _post_code(elsewhere, totp_code(_app(victim)), REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302


@pytest.mark.django_db
def test_forged_forwarded_for_is_not_the_recorded_client_ip(password_only_client, unverified_user):
    _post_code(
        password_only_client,
        totp_code(_app(unverified_user)),
        REMOTE_ADDR="192.0.2.10",
        HTTP_X_FORWARDED_FOR="203.0.113.66",
        HTTP_USER_AGENT="Forger/1.0",
    )

    event = SignInEvent.objects.get(user=unverified_user)
    assert event.ip == "192.0.2.10"
    assert event.user_agent == "Forger/1.0"


@pytest.mark.django_db
def test_wrong_enrolment_codes_are_limited_per_account(client):
    user = _patient_without_factor()
    login_password_only(client, user)
    client.get(ENROL_URL)
    device = _pending(client)
    for _ in range(5):
        assert _code_error(client.post(ENROL_URL, {"code": _wrong_code(device), "name": "Phone"}))

    response = client.post(ENROL_URL, {"code": totp_code(device), "name": "Phone"})

    assert response.status_code == 429
    assert not AuthenticatorApp.objects.filter(user=user).exists()


# --- 5. Secrets at rest ----------------------------------------------------------------------


def _secret_forms(device: AuthenticatorApp) -> list[str]:
    b32, hexa = device.secret_b32, device.bin_key.hex()
    return [b32, b32.lower(), hexa, hexa.upper()]


def _code_forms(codes: list[str]) -> list[str]:
    forms = []
    for code in codes:
        bare = code.replace("-", "")
        forms += [code, code.upper(), bare, bare.upper()]
    return forms


@pytest.mark.django_db
def test_totp_secret_is_encrypted_at_rest(patient):
    device = _app(patient)
    raw = AuthenticatorApp.objects.filter(pk=device.pk).values_list("encrypted_key", flat=True).get()

    assert len(device.bin_key) == 20
    assert not any(form in raw for form in _secret_forms(device))
    assert device.bin_key not in raw.encode()
    # It is a real ciphertext of the key (Fernet), not an empty or constant field.
    assert raw.startswith("gAAAAA")
    assert AuthenticatorApp(encrypted_key=raw).bin_key == device.bin_key


@pytest.mark.django_db
def test_new_authenticator_key_is_random_and_encrypted(client):
    user = _patient_without_factor()
    other = _patient_without_factor()

    a = AuthenticatorApp(encrypted_key=services.authenticator_enrolment_start(actor=actor_of(user)))
    b = AuthenticatorApp(encrypted_key=services.authenticator_enrolment_start(actor=actor_of(other)))

    assert len(a.bin_key) == 20  # 160 bits, RFC 4226 §4
    assert a.bin_key != b.bin_key
    assert not any(form in a.encrypted_key for form in _secret_forms(a))


@pytest.mark.django_db
def test_recovery_codes_are_stored_hashed(patient):
    codes = _recovery_codes(patient)
    rows = list(RecoveryCode.objects.filter(device__user=patient).values_list("code_hash", flat=True))

    assert len(rows) == 10
    stored = " ".join(rows)
    assert not any(form in stored for form in _code_forms(codes))
    codeset = RecoveryCodeSet.objects.get(user=patient)
    assert not any(form in f"{codeset.name} {codeset.pk}" for form in _code_forms(codes))


@pytest.mark.django_db(transaction=True)
def test_database_dump_reveals_no_totp_secret_or_recovery_code():
    """A real ``pg_dump`` of the database after a real enrolment (docs/security.md §4)."""
    user = _patient_without_factor()
    client = login_password_only(Client(), user)
    client.get(ENROL_URL)
    pending = _pending(client)
    # While the key waits for its first code, the session holds it encrypted only.
    for session in Session.objects.all():
        assert not any(s in str(session.get_decoded()) for s in _secret_forms(pending))
    codes = client.post(ENROL_URL, {"code": totp_code(pending), "name": "Phone"}).context["codes"]
    device = AuthenticatorApp.objects.get(user=user)
    assert device.confirmed and device.bin_key == pending.bin_key and len(codes) == 10

    db = connection.settings_dict
    dump = subprocess.run(
        ["pg_dump", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"] or "postgres", db["NAME"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout

    # The dump really holds this account's rows...
    assert user.email in dump
    assert device.encrypted_key in dump
    # ...and none of its secrets, in any spelling.
    for secret in _secret_forms(device):
        assert secret not in dump
    for code in _code_forms(codes):
        assert code not in dump
    # Session data is base64 in the dump, so look inside it too.
    for session in Session.objects.all():
        decoded = str(session.get_decoded())
        assert not any(s in decoded for s in _secret_forms(device) + _code_forms(codes))


# --- 8. Passkeys -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_passkey_registration_refuses_password_only_session(password_only_client):
    response = password_only_client.post(PASSKEY_BEGIN_URL, content_type="application/json")

    assert response.status_code == 302 and urlparse(response["Location"]).path == VERIFY_URL
    assert "otp_webauthn_register_state" not in password_only_client.session


@pytest.mark.django_db
def test_passkey_registration_refuses_password_only_session_without_any_factor(client):
    """Even a user with no factor yet cannot make a passkey their first factor this way."""
    login_password_only(client, _patient_without_factor())

    response = client.post(PASSKEY_BEGIN_URL, content_type="application/json")

    assert response.status_code == 302 and urlparse(response["Location"]).path == ENROL_URL
    assert "otp_webauthn_register_state" not in client.session


@pytest.mark.django_db
def test_passkey_registration_needs_recent_reauthentication(patient_client):
    response = patient_client.post(PASSKEY_BEGIN_URL, content_type="application/json")

    assert response.status_code == 403
    assert response.json()["code"] == "user_not_verified"
    assert "otp_webauthn_register_state" not in patient_client.session


@pytest.mark.django_db
def test_passkey_registration_begins_after_reauthentication(patient_client, patient):
    reauthenticate(patient_client)

    response = patient_client.post(PASSKEY_BEGIN_URL, content_type="application/json")

    assert response.status_code == 200
    options = response.json()
    assert options["challenge"]
    assert options["rp"]["id"] == settings.OTP_WEBAUTHN_RP_ID
    assert options["user"]["name"] == patient.email
    assert options["pubKeyCredParams"]
    assert "otp_webauthn_register_state" in patient_client.session


@pytest.mark.django_db
def test_passkey_registration_complete_refuses_without_reauthentication(patient_client):
    response = patient_client.post(
        "/account/passkeys/registration/complete/", {"id": "x"}, content_type="application/json"
    )

    assert response.status_code == 403


@pytest.mark.django_db
def test_passkey_registration_begin_is_post_only(patient_client):
    reauthenticate(patient_client)

    assert patient_client.get(PASSKEY_BEGIN_URL).status_code == 405


# --- passkey ceremonies with a software authenticator ----------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    """A minimal authenticator: one P-256 key, "none" attestation (WebAuthn §8.7). Enough to run
    the real registration and authentication ceremonies through django-otp-webauthn."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    @property
    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: str) -> bytes:
        origin = settings.OTP_WEBAUTHN_ALLOWED_ORIGINS[0]
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict) -> dict:
        client_data = self._client_data("webauthn.create", options["challenge"])
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self.cose_public_key
        # Flags: user present, user verified, attested credential data included.
        auth_data = hashlib.sha256(options["rp"]["id"].encode()).digest() + bytes([0x45]) + bytes(4) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": _b64(self.credential_id),
            "rawId": _b64(self.credential_id),
            "type": "public-key",
            "response": {"clientDataJSON": _b64(client_data), "attestationObject": _b64(attestation), "transports": ["internal"]},
            "clientExtensionResults": {},
        }

    def get(self, options: dict) -> dict:
        self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = hashlib.sha256(options["rpId"].encode()).digest() + bytes([0x05]) + self.sign_count.to_bytes(4, "big")
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": _b64(self.credential_id),
            "rawId": _b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(client_data),
                "authenticatorData": _b64(auth_data),
                "signature": _b64(signature),
            },
            "clientExtensionResults": {},
        }

    def register_for(self, user: User) -> WebAuthnCredential:
        """Store this authenticator's credential for ``user`` (as a finished registration would)."""
        return WebAuthnCredential.objects.create(
            user=user, name="Laptop passkey", confirmed=True, credential_id=self.credential_id,
            public_key=self.cose_public_key, sign_count=0,
        )


def _json_post(client: Client, url: str, data: dict | None = None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


def _passkey_sign_in(client: Client, authenticator: SoftAuthenticator):
    options = _json_post(client, PASSKEY_AUTH_BEGIN_URL)
    assert options.status_code == 200, options.content
    return _json_post(client, PASSKEY_AUTH_COMPLETE_URL, authenticator.get(options.json()))


@pytest.mark.django_db
def test_passkey_registration_completes_and_signs_out_other_sessions(patient_client, patient):
    other = login_verified(Client(), patient)
    assert other.get("/").status_code == 200
    reauthenticate(patient_client)
    authenticator = SoftAuthenticator()

    options = _json_post(patient_client, PASSKEY_BEGIN_URL).json()
    response = _json_post(patient_client, PASSKEY_COMPLETE_URL, authenticator.create(options))

    assert response.status_code == 200, response.content
    credential = WebAuthnCredential.objects.get(user=patient)
    assert credential.confirmed and bytes(credential.credential_id) == authenticator.credential_id
    assert _is_verified(patient_client)
    lost = other.get("/")
    assert lost.status_code == 302 and urlparse(lost["Location"]).path == LOGIN_URL
    # The new passkey now appears on the security page as a factor.
    factors = patient_client.get("/account/security/").context["factors"]
    assert credential.persistent_id in [f.persistent_id for f in factors]


@pytest.mark.django_db
def test_passkey_verifies_a_password_only_session(client, unverified_user):
    authenticator = SoftAuthenticator()
    authenticator.register_for(unverified_user)
    login_password_only(client, unverified_user)
    page = client.get(VERIFY_URL)
    assert page.status_code == 200 and page.context["has_passkey"]
    before = client.cookies[settings.SESSION_COOKIE_NAME].value

    response = _passkey_sign_in(client, authenticator)

    assert response.status_code == 200, response.content
    assert response.json()["redirect_url"] == "/start/"  # each role's start page (portal.views.start)
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != before  # new session id
    assert _is_verified(client)
    assert SignInEvent.objects.get(user=unverified_user).method == SignInEvent.Method.PASSKEY


@pytest.mark.django_db
def test_a_replayed_passkey_assertion_fails(client, unverified_user):
    authenticator = SoftAuthenticator()
    authenticator.register_for(unverified_user)
    login_password_only(client, unverified_user)
    options = _json_post(client, PASSKEY_AUTH_BEGIN_URL).json()
    assertion = authenticator.get(options)
    assert _json_post(client, PASSKEY_AUTH_COMPLETE_URL, assertion).status_code == 200
    client.post("/accounts/logout/")
    login_password_only(client, unverified_user)

    response = _json_post(client, PASSKEY_AUTH_COMPLETE_URL, assertion)

    assert response.status_code >= 400
    assert not _is_verified(client)


@pytest.mark.django_db
def test_another_users_passkey_does_not_verify_my_session(client, unverified_user, other_patient):
    theirs = SoftAuthenticator()
    theirs.register_for(other_patient)
    login_password_only(client, unverified_user)

    response = _passkey_sign_in(client, theirs)

    assert response.status_code >= 400
    assert not _is_verified(client)
    assert not SignInEvent.objects.exists()


@pytest.mark.django_db
def test_passkey_is_never_a_way_around_the_password(client, patient):
    authenticator = SoftAuthenticator()
    authenticator.register_for(patient)

    begin = _json_post(client, PASSKEY_AUTH_BEGIN_URL)
    complete = _json_post(client, PASSKEY_AUTH_COMPLETE_URL, authenticator.get({"challenge": "x", "rpId": "localhost"}))

    for response in (begin, complete):
        assert response.status_code == 302 and urlparse(response["Location"]).path == LOGIN_URL
    assert "_auth_user_id" not in client.session

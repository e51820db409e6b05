"""Sessions (docs/security.md §5) and password sign-in limits (docs/security.md §3).

New session id at login and after the second factor; logout ends the session; 15-minute idle
and 12-hour absolute timeouts; a password or second-factor change signs out other sessions.
"""

from __future__ import annotations

import datetime as dt
import time
from importlib import import_module
from urllib.parse import urlparse

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as CACHE_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.middleware import AUTH_STARTED_KEY
from accounts.models import AuthenticatorApp
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.factories import PASSWORD, AuthenticatorAppFactory, PatientFactory, UserFactory, totp_code

LOGIN_URL = "/accounts/login/"
LOGOUT_URL = "/accounts/logout/"
VERIFY_URL = "/account/2fa/"
NEW_PASSWORD = "a brand new passphrase 42"


def _session_key(client: Client) -> str | None:
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    return cookie.value if cookie else None


def _session_exists(key: str) -> bool:
    return import_module(settings.SESSION_ENGINE).SessionStore().exists(key)


def _sent_to_login(response) -> bool:
    return response.status_code == 302 and urlparse(response["Location"]).path == LOGIN_URL


def _app(user) -> AuthenticatorApp:
    return AuthenticatorApp.objects.filter(user=user, confirmed=True).order_by("pk").first()


def _password_login(client: Client, email: str, password: str = PASSWORD, **extra):
    return client.post(LOGIN_URL, {"login": email, "password": password}, **extra)


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- session id rotation -------------------------------------------------------------------


@pytest.mark.django_db
def test_session_id_changes_at_password_login_and_after_second_factor(client, patient):
    # A pre-login session the attacker might have planted (session fixation).
    anonymous = client.session
    anonymous["planted"] = True
    anonymous.save()
    planted_key = _session_key(client)
    assert planted_key

    login = _password_login(client, patient.email)

    assert login.status_code == 302
    after_password = _session_key(client)
    assert after_password and after_password != planted_key
    assert not _session_exists(planted_key)
    assert _logged_in(client)

    verify = client.post(VERIFY_URL, {"code": totp_code(_app(patient))})

    assert verify.status_code == 302
    after_factor = _session_key(client)
    assert after_factor and after_factor not in {planted_key, after_password}
    assert not _session_exists(after_password)
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_old_session_cookie_is_useless_after_second_factor(client, patient):
    _password_login(client, patient.email)
    before = _session_key(client)
    client.post(VERIFY_URL, {"code": totp_code(_app(patient))})

    stale = Client()
    stale.cookies[settings.SESSION_COOKIE_NAME] = before

    assert _sent_to_login(stale.get("/"))


# --- logout ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_logout_invalidates_the_session(patient_client):
    assert patient_client.get("/").status_code == 200
    key = _session_key(patient_client)

    response = patient_client.post(LOGOUT_URL)

    assert response.status_code == 302
    assert not _session_exists(key)
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = key
    assert _sent_to_login(replay.get("/"))
    assert _sent_to_login(patient_client.get("/"))


@pytest.mark.django_db
def test_password_only_session_can_log_out(password_only_client):
    key = _session_key(password_only_client)

    response = password_only_client.post(LOGOUT_URL)

    assert response.status_code == 302
    assert not _session_exists(key)


# --- idle timeout ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_idle_timeout_is_fifteen_minutes_and_slides(patient_client):
    """The first request after sign-in writes the session's activity (tests/accounts/
    test_session_writes.py: then at most once a minute), which pushes the expiry back."""
    assert settings.SESSION_COOKIE_AGE == 15 * 60
    key = _session_key(patient_client)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + dt.timedelta(minutes=1))

    assert patient_client.get("/").status_code == 200

    # Activity pushes the expiry back to 15 minutes from now.
    expires = Session.objects.get(session_key=_session_key(patient_client)).expire_date
    assert dt.timedelta(minutes=14) < expires - timezone.now() <= dt.timedelta(minutes=15)


@pytest.mark.django_db
def test_idle_timeout_applies_to_a_real_password_sign_in(client, patient):
    """allauth marks the session "until the browser closes"; the server-side expiry still
    follows the 15-minute idle timeout."""
    _password_login(client, patient.email)
    client.post(VERIFY_URL, {"code": totp_code(_app(patient))})

    expires = Session.objects.get(session_key=_session_key(client)).expire_date

    assert dt.timedelta(minutes=14) < expires - timezone.now() <= dt.timedelta(minutes=15)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["max-age"] and not cookie["expires"]  # a browser-session cookie


@pytest.mark.django_db
def test_idle_session_no_longer_works(patient_client):
    assert patient_client.get("/").status_code == 200
    key = _session_key(patient_client)

    # Fifteen idle minutes: the database row has expired, and so has the cached copy (Redis
    # drops it at the same moment: its TTL is the session's age, test_session_writes.py).
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    cache.delete(CACHE_PREFIX + key)

    assert _sent_to_login(patient_client.get("/"))
    assert _sent_to_login(patient_client.get("/account/security/"))


# --- absolute timeout --------------------------------------------------------------------------


def _set_auth_started(client: Client, hours_ago: float) -> None:
    session = client.session
    session[AUTH_STARTED_KEY] = time.time() - hours_ago * 3600
    session.save()


@pytest.mark.django_db
def test_absolute_timeout_logs_out_after_twelve_hours(patient_client):
    assert settings.SESSION_ABSOLUTE_TIMEOUT == 12 * 60 * 60
    assert patient_client.get("/").status_code == 200
    key = _session_key(patient_client)
    _set_auth_started(patient_client, 13)

    response = patient_client.get("/account/security/")

    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?expired=1"
    assert not _session_exists(key)
    assert not _logged_in(patient_client)
    assert _sent_to_login(patient_client.get("/"))


@pytest.mark.django_db
def test_activity_within_twelve_hours_keeps_the_session(patient_client):
    patient_client.get("/")
    _set_auth_started(patient_client, 11)

    assert patient_client.get("/").status_code == 200


@pytest.mark.django_db
def test_absolute_timeout_clock_starts_at_sign_in_and_survives_the_second_factor(client, patient):
    _password_login(client, patient.email)
    client.get(VERIFY_URL)
    started = client.session[AUTH_STARTED_KEY]

    client.post(VERIFY_URL, {"code": totp_code(_app(patient))})
    client.get("/")

    # Rotating the session id must not restart the 12-hour clock.
    assert client.session[AUTH_STARTED_KEY] == started


@pytest.mark.django_db
def test_absolute_timeout_applies_to_password_only_sessions(password_only_client):
    password_only_client.get(VERIFY_URL)
    _set_auth_started(password_only_client, 13)

    response = password_only_client.get(VERIFY_URL)

    assert response["Location"] == f"{LOGIN_URL}?expired=1"
    assert not _logged_in(password_only_client)


# --- changes that sign out other sessions ------------------------------------------------------


@pytest.mark.django_db
def test_password_change_signs_out_other_sessions(patient_client, patient):
    other = login_verified(Client(), patient)
    assert other.get("/").status_code == 200
    other_key = _session_key(other)

    response = patient_client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302, response.context and response.context["form"].errors
    patient.refresh_from_db()
    assert patient.check_password(NEW_PASSWORD)
    # The other session is gone from the store, not merely failing the password-hash check.
    assert not _session_exists(other_key)
    assert not UserSession.objects.filter(session_key=other_key).exists()
    assert _sent_to_login(other.get("/"))
    # The session that made the change carries on, still verified.
    assert patient_client.get("/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_removing_a_factor_signs_out_other_sessions(patient_client, patient):
    """Transactional: the sign-out runs on commit, inside the request (as in production)."""
    first = _app(patient)
    second = AuthenticatorAppFactory(user=patient, name="Tablet")
    # The other session verified with the factor that stays, so only the sign-out can end it.
    other = Client()
    login_password_only(other, patient)
    other.post(VERIFY_URL, {"code": totp_code(second)})
    assert other.get("/").status_code == 200
    other_key = _session_key(other)
    reauthenticate(patient_client)

    response = patient_client.post(f"/account/security/factors/{first.persistent_id}/remove/")

    assert response.status_code == 302
    assert not AuthenticatorApp.objects.filter(pk=first.pk).exists()
    assert not _session_exists(other_key)
    assert _sent_to_login(other.get("/"))


@pytest.mark.django_db
def test_new_recovery_codes_sign_out_other_sessions(patient_client, patient):
    other = login_verified(Client(), patient)
    assert other.get("/").status_code == 200
    other_key = _session_key(other)
    reauthenticate(patient_client)

    response = patient_client.post("/account/security/recovery-codes/")

    assert response.status_code == 200
    assert not _session_exists(other_key)
    assert _sent_to_login(other.get("/"))
    assert patient_client.get("/").status_code == 200


@pytest.mark.django_db
def test_sign_out_everywhere_else(patient_client, patient):
    other = login_verified(Client(), patient)
    other.get("/", HTTP_USER_AGENT="OtherBrowser/2.0")
    patient_client.get("/", HTTP_USER_AGENT="ThisBrowser/1.0")

    page = patient_client.get("/account/security/", HTTP_USER_AGENT="ThisBrowser/1.0").content.decode()
    assert "OtherBrowser/2.0" in page and "ThisBrowser/1.0" in page

    response = patient_client.post("/accounts/sessions/")

    assert response.status_code == 302
    assert _sent_to_login(other.get("/"))
    assert patient_client.get("/").status_code == 200


# --- password sign-in limits (docs/security.md §3) ---------------------------------------------------


@pytest.mark.django_db
def test_wrong_passwords_are_limited_per_account(client, patient):
    assert "5/5m/key" in settings.ACCOUNT_RATE_LIMITS["login_failed"]
    for n in range(5):
        response = _password_login(Client(), patient.email, "wrong password", REMOTE_ADDR=f"192.0.2.{n + 1}")
        assert response.status_code == 200 and response.context["form"].errors

    response = _password_login(client, patient.email, REMOTE_ADDR="192.0.2.200")

    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert not _logged_in(client)


@pytest.mark.django_db
def test_wrong_passwords_are_limited_per_ip_across_accounts(client):
    """20 wrong passwords a minute from one address; forged X-Forwarded-For changes nothing."""
    assert "20/m/ip" in settings.ACCOUNT_RATE_LIMITS["login_failed"]
    assert settings.ALLAUTH_TRUSTED_PROXY_COUNT == 0
    attacker = "198.51.100.9"
    attempt = 0
    for _ in range(4):
        email = UserFactory().email
        for _ in range(5):
            attempt += 1
            response = _password_login(
                Client(), email, "wrong password", REMOTE_ADDR=attacker, HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}"
            )
            assert "Too many failed login attempts" not in response.content.decode()

    victim = UserFactory()
    PatientFactory(user=victim)
    response = _password_login(client, victim.email, REMOTE_ADDR=attacker, HTTP_X_FORWARDED_FOR="203.0.113.250")

    assert "Too many failed login attempts" in response.content.decode()
    assert not _logged_in(client)

    elsewhere = Client()
    assert _password_login(elsewhere, victim.email, REMOTE_ADDR="192.0.2.50").status_code == 302
    assert _logged_in(elsewhere)


@pytest.mark.django_db
def test_successful_password_login_does_not_verify_the_session(client, patient):
    response = _password_login(client, patient.email)

    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 302 and urlparse(home["Location"]).path == VERIFY_URL


# --- the sessions list: browsers by name, unfinished sign-ins (issue 19, item 11) ---------------

CHROME_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SECURITY_URL = "/account/security/"
SESSIONS_URL = "/accounts/sessions/"


def _end_url(session: UserSession) -> str:
    return f"/account/security/sessions/{session.pk}/end/"


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (CHROME_WINDOWS, "Chrome 124 on Windows"),
        (SAFARI_IPHONE, "Mobile Safari 17 on iOS"),
        (FIREFOX_LINUX, "Firefox 128 on Linux"),
        ("", "Unknown browser"),
        ("\x00 not a browser", "Unknown browser"),
    ],
)
def test_browser_names(agent, name):
    from accounts.sessions import browser_name

    assert browser_name(agent) == name


def _unfinished_sign_in(user, agent: str = FIREFOX_LINUX) -> tuple[Client, UserSession]:
    """Someone gives ``user``'s password in another browser and stops at the second factor."""
    elsewhere = Client(HTTP_USER_AGENT=agent, REMOTE_ADDR="198.51.100.23")
    assert _password_login(elsewhere, user.email, HTTP_USER_AGENT=agent, REMOTE_ADDR="198.51.100.23").status_code == 302
    elsewhere.get(VERIFY_URL, HTTP_USER_AGENT=agent, REMOTE_ADDR="198.51.100.23")
    return elsewhere, UserSession.objects.get(user=user, session_key=_session_key(elsewhere))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [SECURITY_URL, SESSIONS_URL])
def test_sessions_are_named_and_an_unfinished_sign_in_is_marked(client, patient, url):
    login_verified(client, patient)
    client.get("/", HTTP_USER_AGENT=CHROME_WINDOWS)
    _elsewhere, unfinished = _unfinished_sign_in(patient)

    html = client.get(url, HTTP_USER_AGENT=CHROME_WINDOWS).content.decode()

    assert "Chrome 124 on Windows" in html and "Firefox 128 on Linux" in html
    assert html.count("Sign-in not finished") == 1
    row = html[html.index(f'data-session="{unfinished.pk}"'):]
    row = row[: row.index("</tr>")]
    assert "Sign-in not finished" in row and "End this sign-in" in row and "198.51.100.23" in row


@pytest.mark.django_db
def test_ending_an_unfinished_sign_in(client, patient):
    login_verified(client, patient)
    client.get("/")
    elsewhere, unfinished = _unfinished_sign_in(patient)
    key = unfinished.session_key

    response = client.post(_end_url(unfinished))

    assert response.status_code == 302 and urlparse(response["Location"]).path == SECURITY_URL
    assert not _session_exists(key)
    assert not UserSession.objects.filter(pk=unfinished.pk).exists()
    assert _sent_to_login(elsewhere.get(VERIFY_URL))
    assert client.get(SECURITY_URL).status_code == 200  # the acting session goes on


@pytest.mark.django_db
def test_ending_a_session_that_is_not_ones_own_is_a_404(client, patient, other_patient):
    login_verified(client, patient)
    client.get("/")
    _elsewhere, theirs = _unfinished_sign_in(other_patient)
    own = UserSession.objects.get(user=patient, session_key=_session_key(client))

    assert client.post(_end_url(theirs)).status_code == 404
    assert client.post("/account/security/sessions/999999999/end/").status_code == 404
    assert client.post(_end_url(own)).status_code == 404  # this session: that is "Sign out"
    assert _session_exists(theirs.session_key) and _session_exists(own.session_key)


@pytest.mark.django_db
def test_ending_a_session_needs_a_verified_post(client, patient):
    _elsewhere, unfinished = _unfinished_sign_in(patient)
    url = _end_url(unfinished)
    assert _sent_to_login(client.post(url))
    login_password_only(client, patient)
    response = client.post(url)
    assert response.status_code == 302 and urlparse(response["Location"]).path == VERIFY_URL
    login_verified(client, patient)
    assert client.get(url).status_code == 405
    assert _session_exists(unfinished.session_key)

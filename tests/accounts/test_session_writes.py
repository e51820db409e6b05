"""Sessions in the cache, written at most once a minute (issue 18, "Pages"; docs/security.md §5).

A page within the minute writes nothing; after a minute it writes the session (sliding the idle
timeout) and its activity record; the idle timeout still signs out; a session ended elsewhere
stops working at once although it is read from Redis.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import urlparse

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as CACHE_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.middleware import ACTIVITY_KEY
from tests.conftest import login_verified

WRITE = re.compile(r'^\s*(UPDATE|INSERT INTO|DELETE FROM)\s+"?(\w+)', re.IGNORECASE)


def _key(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _writes(client: Client, path: str = "/account/security/") -> list[tuple[str, str]]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return [(m[1].upper(), m[2]) for q in queries.captured_queries if (m := WRITE.match(q["sql"]))]


def _age_activity(client: Client, seconds: float) -> None:
    """Pretend the session's activity was last written ``seconds`` ago."""
    session = client.session
    session[ACTIVITY_KEY] = [_key(client), time.time() - seconds]
    session.save()


def _sent_to_login(response) -> bool:
    return response.status_code == 302 and urlparse(response["Location"]).path == "/accounts/login/"


@pytest.mark.django_db
def test_a_page_within_the_minute_writes_nothing(patient_client):
    assert patient_client.get("/").status_code == 200  # the first request after sign-in writes

    assert _writes(patient_client) == []
    assert _writes(patient_client, "/") == []


@pytest.mark.django_db
def test_after_a_minute_one_page_writes_the_session_and_its_activity(patient_client):
    patient_client.get("/")
    before = UserSession.objects.get(session_key=_key(patient_client)).last_seen_at
    _age_activity(patient_client, settings.SESSION_ACTIVITY_INTERVAL + 1)

    writes = _writes(patient_client)

    assert sorted(writes) == [("UPDATE", "django_session"), ("UPDATE", "usersessions_usersession")]
    assert UserSession.objects.get(session_key=_key(patient_client)).last_seen_at > before
    assert _writes(patient_client) == []  # and then nothing again for a minute


@pytest.mark.django_db
def test_the_write_after_a_minute_slides_the_idle_timeout_in_the_database_and_the_cache(patient_client):
    patient_client.get("/")
    key = _key(patient_client)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + dt.timedelta(minutes=2))
    _age_activity(patient_client, settings.SESSION_ACTIVITY_INTERVAL + 1)

    patient_client.get("/")

    expires = Session.objects.get(session_key=key).expire_date
    assert dt.timedelta(minutes=14) < expires - timezone.now() <= dt.timedelta(minutes=15)
    ttl = cache.ttl(CACHE_PREFIX + key)
    assert 14 * 60 < ttl <= 15 * 60


@pytest.mark.django_db
def test_a_page_within_the_minute_does_not_slide_the_idle_timeout(patient_client):
    """Between writes the expiry stays put: the idle timeout can only come sooner, never later."""
    patient_client.get("/")
    key = _key(patient_client)
    expires = Session.objects.get(session_key=key).expire_date

    patient_client.get("/")

    assert Session.objects.get(session_key=key).expire_date == expires


@pytest.mark.django_db
def test_the_session_is_read_from_the_cache(patient_client):
    patient_client.get("/")
    key = _key(patient_client)
    assert cache.get(CACHE_PREFIX + key) is not None

    with CaptureQueriesContext(connection) as queries:
        patient_client.get("/")

    assert not [q for q in queries.captured_queries if "django_session" in q["sql"]]


@pytest.mark.django_db
def test_an_idle_session_ends_when_the_cache_drops_it(patient_client):
    """Redis expires the cached copy with the session (TTL above); without it the expired row
    in the database is not revived."""
    patient_client.get("/")
    key = _key(patient_client)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    cache.delete(CACHE_PREFIX + key)

    assert _sent_to_login(patient_client.get("/"))


@pytest.mark.django_db
def test_sign_out_everywhere_ends_a_cached_session_at_once(patient_client, patient):
    other = login_verified(Client(), patient)
    assert other.get("/").status_code == 200
    other_key = _key(other)
    assert cache.get(CACHE_PREFIX + other_key) is not None  # the other browser reads from Redis

    assert patient_client.post("/accounts/sessions/").status_code == 302

    assert cache.get(CACHE_PREFIX + other_key) is None
    assert not Session.objects.filter(session_key=other_key).exists()
    assert _sent_to_login(other.get("/"))
    assert patient_client.get("/").status_code == 200


@pytest.mark.django_db
def test_sessions_are_listed_with_their_browsers(patient_client, patient):
    other = login_verified(Client(), patient)
    other.get("/", HTTP_USER_AGENT="OtherBrowser/2.0")

    page = patient_client.get("/account/security/", HTTP_USER_AGENT="ThisBrowser/1.0").content.decode()

    assert "OtherBrowser/2.0" in page and "ThisBrowser/1.0" in page


@pytest.mark.django_db
def test_a_cycled_session_key_gets_its_own_activity_record(client, patient):
    """The second factor gives the session a new id; its first page records it at once."""
    login_verified(client, patient)
    client.get("/")
    session = client.session
    session.cycle_key()
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key

    client.get("/")

    assert UserSession.objects.filter(session_key=session.session_key).exists()

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.models import User
from tests.factories import PASSWORD, AuthenticatorAppFactory, PatientFactory, UserFactory


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

"""Fixtures for proxies: a child's record (no account of its own), a parent with their own
account and second factor, and a helper to become the child's proxy."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from consent.services import consent_policy_publish
from imaging.models import Patient
from proxies.models import ProxyGrant
from proxies.services import proxy_code_issue, proxy_code_redeem
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory, actor_of

CHILD_DOB = dt.date(2018, 6, 15)


@pytest.fixture
def policy(db):
    return consent_policy_publish(version=1, text="Version one.", effective_from=timezone.now() - dt.timedelta(days=30))


@pytest.fixture
def child(db) -> Patient:
    return PatientFactory(name="Sam Doe", birth_date=CHILD_DOB)


@pytest.fixture
def parent(db):
    """A person with their own account and second factor, and no patient record."""
    user = UserFactory(email="alex.parent@example.net")
    AuthenticatorAppFactory(user=user)
    return user


def make_grant(child: Patient, parent, *, scope: str = "view", relationship: str = "parent") -> ProxyGrant:
    code = proxy_code_issue(patient=child, relationship=relationship, scope=scope)
    return proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=child.birth_date, name="Alex Doe")


def acting_client(client: Client, user, grant: ProxyGrant | None) -> Client:
    """``user`` signed in with both factors, acting under ``grant`` (None: as themselves)."""
    login_verified(client, user)
    response = client.post("/proxy/switch/", {"grant": grant.pk if grant else ""})
    assert response.status_code == 302
    return client

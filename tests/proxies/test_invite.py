"""An adult patient invites someone by email from "People who can act for me" (email, scope, end
date, password confirmed; docs/security.md §28)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from portal.actors import proxy_actor_for_user
from proxies.models import ProxyCode
from proxies.services import InviteRefused, proxy_code_redeem, proxy_invite
from tests.conftest import login_verified, reauthenticate
from tests.factories import actor_of

from .conftest import acting_client, make_grant

pytestmark = pytest.mark.django_db


def _invite(client, **extra):
    data = {"email": "robin@example.net", "relationship": "caregiver", "scope": "view+consent", **extra}
    return client.post("/people/invite/", data)


def test_the_invitee_gets_a_code_by_email_and_it_works_until_the_end_date(client, patient, parent, django_capture_on_commit_callbacks):
    login_verified(client, patient)
    ends = timezone.localdate() + dt.timedelta(days=30)
    reauthenticate(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client, ends_on=ends.isoformat())
    assert response.status_code == 302 and response["Location"] == "/people/"
    (email,) = mail.outbox
    assert email.to == ["robin@example.net"] and patient.patient.name in email.subject
    code = re.search(r"Your code: (\S+)", email.body).group(1)
    assert ProxyCode.objects.get().invited_email == "robin@example.net"
    assert "robin@example.net" in client.get("/people/").content.decode()  # pending
    grant = proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=patient.patient.birth_date, name="Robin")
    assert grant.scope == "view+consent" and grant.relationship == "caregiver"
    assert timezone.localtime(grant.ends_at).date() == ends + dt.timedelta(days=1)


def test_inviting_needs_the_password_again(client, patient):
    login_verified(client, patient)
    response = _invite(client)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert not ProxyCode.objects.exists() and not mail.outbox


def test_a_young_patient_cannot_invite(patient):
    patient.patient.birth_date = timezone.localdate().replace(year=timezone.localdate().year - 15)
    patient.patient.save()
    with pytest.raises(InviteRefused):
        proxy_invite(actor=actor_of(patient), email="x@example.net", relationship="caregiver", scope="view")
    assert not ProxyCode.objects.exists()


def test_a_proxy_cannot_invite_more_proxies(client, patient, parent):
    grant = make_grant(patient.patient, parent, scope="full", relationship="caregiver")
    acting_client(client, parent, grant)
    reauthenticate(client)
    assert _invite(client).status_code == 403
    as_proxy = proxy_actor_for_user(parent, grant.pk, reauthenticated_at=timezone.now())
    assert as_proxy.is_proxy and as_proxy.allows("full")
    with pytest.raises(PermissionDenied):
        proxy_invite(actor=as_proxy, email="x@example.net", relationship="caregiver", scope="view")
    assert not ProxyCode.objects.exclude(invited_email="").exists()

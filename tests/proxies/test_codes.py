"""Proxy codes (docs/security.md §28): stored hashed, single-use, expiring, rate limited, and a
wrong code and a wrong date of birth answer the same way."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.core.exceptions import RateLimited
from django.core.management import call_command
from django.utils import timezone

from proxies.forms import CODE_MISMATCH
from proxies.models import ProxyCode, ProxyGrant
from proxies.services import ProxyCodeError, proxy_code_issue, proxy_code_redeem
from tests.conftest import login_verified
from tests.factories import actor_of

from .conftest import CHILD_DOB

pytestmark = pytest.mark.django_db


def test_code_is_stored_only_as_a_keyed_hash(child):
    code = proxy_code_issue(patient=child, relationship="parent")
    row = ProxyCode.objects.get()
    assert code.replace("-", "") not in row.code_hash
    assert len(code) == 14 and row.expires_at > timezone.now()


def test_code_makes_a_grant_once(child, parent, other_patient):
    code = proxy_code_issue(patient=child, relationship="guardian", scope="view+consent")
    grant = proxy_code_redeem(actor=actor_of(parent), code=code.lower(), birth_date=CHILD_DOB, name="Alex Doe")
    assert (grant.patient, grant.proxy, grant.relationship, grant.scope) == (child, parent, "guardian", "view+consent")
    with pytest.raises(ProxyCodeError):
        proxy_code_redeem(actor=actor_of(other_patient), code=code, birth_date=CHILD_DOB, name="Someone")
    assert ProxyGrant.objects.count() == 1


def test_wrong_birth_date_and_wrong_code_answer_the_same(client, child, parent):
    code = proxy_code_issue(patient=child, relationship="parent")
    login_verified(client, parent)
    wrong_dob = client.post("/proxy/code/", {"code": code, "birth_date": "2018-06-16", "name": "Alex"})
    wrong_code = client.post("/proxy/code/", {"code": "ABCD-EFGH-JKMN", "birth_date": "2018-06-15", "name": "Alex"})
    assert wrong_dob.status_code == wrong_code.status_code == 400
    assert wrong_dob.context["form"].errors == wrong_code.context["form"].errors == {"code": [str(CODE_MISMATCH)]}
    assert not ProxyGrant.objects.exists()


def test_expired_code_is_refused(child, parent):
    code = proxy_code_issue(patient=child, relationship="parent", expires_days=1)
    ProxyCode.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(ProxyCodeError):
        proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=CHILD_DOB, name="Alex")


def test_guessing_is_rate_limited_per_ip(child, parent, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "activation": "3/h/ip"}
    for _ in range(3):
        with pytest.raises(ProxyCodeError):
            proxy_code_redeem(actor=actor_of(parent), code="AAAA-AAAA-AAAA", birth_date=CHILD_DOB, name="A")
    code = proxy_code_issue(patient=child, relationship="parent")
    with pytest.raises(RateLimited):
        proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=CHILD_DOB, name="A")


def test_issue_proxy_code_command_prints_a_usable_code(child, parent, capsys):
    call_command("issue_proxy_code", child.mrn, "--relationship", "caregiver", "--scope", "full", "--expires-days", "3")
    code = capsys.readouterr().out.strip()
    row = ProxyCode.objects.get()
    assert (row.relationship, row.scope) == ("caregiver", "full")
    assert row.expires_at < timezone.now() + dt.timedelta(days=3, minutes=1)
    grant = proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=CHILD_DOB, name="Alex")
    assert grant.scope == "full"

"""A parent or carer with no record signs up with a proxy code (issue 21, docs/security.md §1, §28):
the code is checked like on /proxy/code/ (same answer, same rate limit) but only held for the new
account; the grant is made on its first visit to /proxy/code/ with both factors, never before."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import User
from imaging.models import Patient
from proxies.forms import CODE_MISMATCH
from proxies.models import ProxyCode, ProxyGrant
from proxies.services import proxy_code_issue, proxy_code_redeem
from proxies.tasks import apply_ages
from tests.conftest import login_password_only, login_verified
from tests.factories import AuthenticatorAppFactory, PatientFactory, actor_of

from .conftest import CHILD_DOB, make_grant

pytestmark = pytest.mark.django_db

SIGNUP_URL = "/proxy/signup/"
PASSWORD = "quiet lantern over 9 hills"
EMAIL = "carer@example.net"


def signup_data(code: str, *, birth_date: str = CHILD_DOB.isoformat(), email: str = EMAIL) -> dict:
    return {"proxy_code": code, "birth_date": birth_date, "email": email, "password1": PASSWORD, "password2": PASSWORD}


def mismatch(response) -> list[str]:
    assert response.status_code == 200
    return response.context["form"].errors.get("proxy_code", [])


def test_signup_makes_an_account_with_no_record_and_holds_the_code(client, child):
    code = proxy_code_issue(patient=child, relationship="parent", scope="view+consent")
    response = client.post(SIGNUP_URL, signup_data(code))
    assert response.status_code == 302
    user = User.objects.get(email=EMAIL)
    assert not Patient.objects.filter(user=user).exists()
    row = ProxyCode.objects.get()
    # Held, not used: the account has no second factor yet (§1), so no grant.
    assert (row.held_for_id, row.used_at) == (user.pk, None)
    assert not ProxyGrant.objects.exists()
    assert re.search(r"/accounts/confirm-email/", mail.outbox[0].body)


def test_wrong_code_and_wrong_birth_date_answer_the_same(client, child):
    code = proxy_code_issue(patient=child, relationship="parent")
    wrong_dob = client.post(SIGNUP_URL, signup_data(code, birth_date="2018-06-16"))
    wrong_code = client.post(SIGNUP_URL, signup_data("ABCD-EFGH-JKMN"))
    assert mismatch(wrong_dob) == mismatch(wrong_code) == [str(CODE_MISMATCH)]
    assert not User.objects.filter(email=EMAIL).exists()


def test_a_used_code_is_refused_the_same_way(client, child, parent):
    code = proxy_code_issue(patient=child, relationship="parent")
    proxy_code_redeem(actor=actor_of(parent), code=code, birth_date=CHILD_DOB, name="Alex")
    assert mismatch(client.post(SIGNUP_URL, signup_data(code))) == [str(CODE_MISMATCH)]
    assert not User.objects.filter(email=EMAIL).exists()


def test_guessing_at_signup_is_rate_limited_like_activation_codes(client, child, settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "activation": "3/h/ip"}
    for _ in range(3):
        assert mismatch(client.post(SIGNUP_URL, signup_data("AAAA-AAAA-AAAA")))
    code = proxy_code_issue(patient=child, relationship="parent")
    response = client.post(SIGNUP_URL, signup_data(code))
    assert response.status_code == 200
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(email=EMAIL).exists()


@pytest.fixture
def signed_up(client, child):
    """The account made with a proxy code (email verified is not what the gate checks: §1 is)."""
    code = proxy_code_issue(patient=child, relationship="parent", scope="view+consent")
    assert client.post(SIGNUP_URL, signup_data(code)).status_code == 302
    return User.objects.get(email=EMAIL)


def test_no_grant_for_a_password_only_session(client, signed_up):
    login_password_only(client, signed_up)
    response = client.post("/proxy/code/", {"name": "Alex Doe"})
    assert response.status_code == 302 and "/proxy/code/" not in response["Location"]
    assert not ProxyGrant.objects.exists()
    assert ProxyCode.objects.get().used_at is None


def test_the_held_code_is_redeemed_after_the_second_factor(client, signed_up, child):
    AuthenticatorAppFactory(user=signed_up)
    login_verified(client, signed_up)
    home = client.get("/").content.decode()
    assert "The proxy code you signed up with is ready." in home and 'href="/proxy/code/"' in home
    page = client.get("/proxy/code/")
    assert page.status_code == 200
    assert set(page.context["form"].fields) == {"name"}  # the code and date of birth were checked at sign-up
    assert "Sam Doe" in page.content.decode()
    response = client.post("/proxy/code/", {"name": "Alex Doe"})
    assert response.status_code == 302
    grant = ProxyGrant.objects.get()
    assert (grant.patient, grant.proxy, grant.proxy_name, grant.scope) == (child, signed_up, "Alex Doe", "view+consent")
    row = ProxyCode.objects.get()
    assert row.used_by == signed_up and row.held_for is None
    assert "The proxy code you signed up with is ready." not in client.get("/").content.decode()
    # Used: the page asks for a code again.
    assert set(client.get("/proxy/code/").context["form"].fields) == {"code", "birth_date", "name"}


def test_a_held_code_used_by_someone_else_meanwhile_is_not_redeemed(client, signed_up, child, parent):
    row = ProxyCode.objects.get()
    ProxyCode.objects.filter(pk=row.pk).update(used_at=timezone.now(), used_by=parent)
    AuthenticatorAppFactory(user=signed_up)
    login_verified(client, signed_up)
    assert set(client.get("/proxy/code/").context["form"].fields) == {"code", "birth_date", "name"}
    assert not ProxyGrant.objects.filter(proxy=signed_up).exists()


def test_the_signup_pages_link_to_each_other(client):
    assert 'href="/proxy/signup/"' in client.get("/accounts/signup/").content.decode()
    assert 'href="/accounts/signup/"' in client.get(SIGNUP_URL).content.decode()


def test_the_daily_task_applies_the_growing_up_rules(parent, settings):
    today = timezone.localdate()
    try:
        born = today.replace(year=today.year - settings.PROXY_AGE_END)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - settings.PROXY_AGE_END, day=28)
    make_grant(PatientFactory(birth_date=born), parent)
    assert apply_ages.apply().get() == {"announced": 1, "ended": 1}
    assert ProxyGrant.objects.get().end_reason == "age"
    assert settings.CELERY_BEAT_SCHEDULE["proxies-apply-ages"]["task"] == apply_ages.name

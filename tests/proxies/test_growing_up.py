"""Growing up (docs/security.md §28): a parent's or guardian's access narrows at
PROXY_AGE_RESTRICTED (no access log or consent unless the young person agrees) and ends at
PROXY_AGE_END; each change is announced to both in advance, in plain words. A fixed ``today``."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.core.management import call_command

from notices.models import Notice
from proxies.models import ProxyGrant
from proxies.services import grant_allows, proxy_ages_apply
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory

from .conftest import acting_client, make_grant

pytestmark = pytest.mark.django_db

BORN = dt.date(2014, 3, 10)  # 12 on 2026-03-10, 18 on 2032-03-10


@pytest.fixture
def young(db):
    """A young person with their own account (so they can agree) and a parent proxy."""
    user = UserFactory(email="sam.young@example.net")
    AuthenticatorAppFactory(user=user)
    return PatientFactory(user=user, name="Sam Young", birth_date=BORN)


@pytest.mark.parametrize(
    ("today", "allows"),
    [
        (dt.date(2026, 3, 9), {"log", "consent", "full"}),  # 11: everything the scope gives
        (dt.date(2026, 3, 10), {"full"}),  # 12: no log, no consent
        (dt.date(2032, 3, 9), {"full"}),
        (dt.date(2032, 3, 10), None),  # 18: ended
    ],
)
def test_a_parents_access_by_age(young, parent, today, allows):
    grant = make_grant(young, parent, scope="full")
    assert grant_allows(grant, today=today) == (None if allows is None else frozenset(allows))


def test_a_caregiver_is_not_a_parent(young, parent):
    grant = make_grant(young, parent, scope="full", relationship="caregiver")
    assert grant_allows(grant, today=dt.date(2040, 1, 1)) == {"log", "consent", "full"}


def test_the_young_person_can_agree(client, young, parent):
    grant = make_grant(young, parent, scope="view+consent")
    login_verified(client, young.user)
    assert client.post(f"/people/{grant.pk}/agree/", {"agree": "1"}).status_code == 302
    grant.refresh_from_db()
    assert grant_allows(grant, today=dt.date(2027, 1, 1)) == {"log", "consent"}


def test_each_change_is_announced_to_both_in_advance_once(young, parent, settings):
    settings.PROXY_AGE_NOTICE_DAYS = 30
    grant = make_grant(young, parent)
    assert proxy_ages_apply(today=dt.date(2026, 2, 7)) == {"announced": 0, "ended": 0}  # 31 days before
    assert proxy_ages_apply(today=dt.date(2026, 2, 8)) == {"announced": 1, "ended": 0}  # 30 days before
    assert proxy_ages_apply(today=dt.date(2026, 2, 9)) == {"announced": 0, "ended": 0}  # told once
    notice = Notice.objects.get(patient=young, kind=Notice.Kind.PROXY_ACCESS)
    assert "access log and consent choices are Sam Young's own" in notice.subject
    assert sorted(m.to[0] for m in mail.outbox) == ["alex.parent@example.net", "sam.young@example.net"]
    assert "unless Sam Young agrees" in mail.outbox[0].body
    mail.outbox.clear()
    assert proxy_ages_apply(today=dt.date(2032, 2, 9)) == {"announced": 1, "ended": 0}  # 2032 is a leap year
    assert "ends on" in mail.outbox[0].subject
    assert proxy_ages_apply(today=dt.date(2032, 3, 10)) == {"announced": 0, "ended": 1}
    grant.refresh_from_db()
    assert grant.ended_at is not None and grant.end_reason == "age"


def test_at_twelve_the_parent_is_told_why_not_denied(client, parent, settings):
    # Born twelve years ago today (the clock is real here, the birth date moves with it).
    from django.utils import timezone

    today = timezone.localdate()
    child = PatientFactory(name="Sam Doe", birth_date=today.replace(year=today.year - settings.PROXY_AGE_RESTRICTED))
    acting_client(client, parent, make_grant(child, parent, scope="view+consent"))
    page = client.get("/access-log/")
    assert page.status_code == 403
    assert "only if Sam Doe agrees" in page.content.decode()
    assert "Who saw my scans" not in client.get("/").content.decode()  # the menu hides it too


def test_apply_proxy_ages_command(young, parent):
    make_grant(young, parent)
    call_command("apply_proxy_ages", "--today", "2032-03-10")
    assert ProxyGrant.objects.get().end_reason == "age"

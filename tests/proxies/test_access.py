"""What a proxy reaches (docs/security.md §28): exactly the granted patient, within the grant's
scope, never after the grant ends; everything recorded under the proxy's name on behalf of the
patient; only the patient manages proxies."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AccessEvent
from consent.models import ConsentDecision
from proxies.models import ProxyGrant
from tests.conftest import login_verified, reauthenticate
from tests.consent.conftest import make_study

from .conftest import acting_client, make_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def child_study(child):
    return make_study(child, "MR knee")


def test_proxy_sees_the_child_and_only_the_child(client, child, parent, child_study, other_patient):
    other_study = make_study(other_patient.patient, "XR hand")
    grant = make_grant(child, parent)
    acting_client(client, parent, grant)
    page = client.get("/")
    assert "Viewing: Sam Doe" in page.content.decode()
    assert client.get(f"/studies/{child_study.pk}/").status_code == 200
    assert client.get(f"/studies/{other_study.pk}/").status_code == 404


def test_the_log_names_the_proxy_on_behalf_of_the_patient(client, child, parent, child_study):
    acting_client(client, parent, make_grant(child, parent))
    client.get(f"/studies/{child_study.pk}/")
    event = AccessEvent.objects.get(patient=child, action="view")
    assert (event.actor_type, event.actor_name) == ("proxy", "Alex Doe")
    assert "on behalf of the patient" in event.role
    assert event.actor_ref == f"user:{parent.pk}"
    # The patient reads it under the proxy's name (the proxy reading it sees "You", below).
    from audit.selectors import describe

    assert describe(event).startswith("Alex Doe, parent acting on behalf of the patient viewed your MR knee")


def test_own_records_one_click_away(client, child, parent, child_study):
    grant = make_grant(child, parent)
    acting_client(client, parent, grant)
    client.post("/proxy/switch/", {"grant": ""})
    assert client.get(f"/studies/{child_study.pk}/").status_code == 404


def test_ended_grant_refuses_the_next_request(client, child, parent, child_study):
    grant = make_grant(child, parent)
    acting_client(client, parent, grant)
    assert client.get(f"/studies/{child_study.pk}/").status_code == 200
    call_command("end_proxy", str(grant.pk), "--reason", "Court order")
    ended = client.get(f"/studies/{child_study.pk}/")
    assert ended.status_code == 403
    assert "You can no longer see Sam Doe" in ended.content.decode()
    # Afterwards this browser is the parent's own: the child's study is as missing as any other.
    assert client.get(f"/studies/{child_study.pk}/").status_code == 404
    assert client.post("/proxy/switch/", {"grant": grant.pk}).status_code == 302
    assert client.get(f"/studies/{child_study.pk}/").status_code == 404


def test_past_end_date_reaches_nothing(client, child, parent, child_study):
    import datetime as dt

    from django.utils import timezone

    grant = make_grant(child, parent)
    acting_client(client, parent, grant)
    ProxyGrant.objects.filter(pk=grant.pk).update(ends_at=timezone.now() - dt.timedelta(seconds=1))
    assert client.get(f"/studies/{child_study.pk}/").status_code == 403


@pytest.mark.parametrize(
    ("scope", "log", "consent", "full"),
    [("view", 200, 403, 403), ("view+consent", 200, 200, 403), ("full", 200, 200, 200)],
)
def test_each_scope_opens_its_pages(client, child, parent, scope, log, consent, full):
    acting_client(client, parent, make_grant(child, parent, scope=scope))
    assert client.get("/access-log/").status_code == log
    assert client.get("/consent/").status_code == consent
    assert client.get(reverse("exports-list")).status_code == full
    assert client.get(reverse("flags-mine")).status_code == full


def test_view_scope_cannot_change_consent_even_by_post(client, child, parent, policy):
    acting_client(client, parent, make_grant(child, parent, scope="view"))
    reauthenticate(client)
    response = client.post("/consent/change/research/", {"decision": "granted"})
    assert response.status_code == 403
    assert "lets you" in response.content.decode()
    assert not ConsentDecision.objects.exists()


def test_consent_by_a_proxy_names_both(client, child, parent, policy):
    acting_client(client, parent, make_grant(child, parent, scope="view+consent"))
    reauthenticate(client)
    assert client.post("/consent/change/research/", {"decision": "granted"}).status_code == 302
    row = ConsentDecision.objects.get(patient=child)
    assert row.actor_id == parent.pk
    assert row.receipt["receipt"]["recorded_by"] == "proxy"
    assert row.receipt["receipt"]["proxy"] == {"name": "Alex Doe", "relationship": "parent", "on_behalf_of": "subject"}
    assert "Alex Doe (parent) on behalf of you" in client.get("/consent/history/").content.decode()
    event = AccessEvent.objects.get(patient=child, action="modify")
    assert (event.actor_type, event.actor_name) == ("proxy", "Alex Doe")


def test_a_proxy_cannot_manage_proxies_or_the_patients_sign_in(client, child, parent):
    grant = make_grant(child, parent, scope="full")
    acting_client(client, parent, grant)
    assert client.get("/people/").status_code == 403
    assert client.post(f"/people/{grant.pk}/end/").status_code == 403
    assert client.get("/access-log/notifications/").status_code == 403
    # Account pages are the proxy's own account, never the patient's.
    assert client.get("/account/security/").status_code == 200
    page = client.get("/accounts/email/")
    assert page.status_code == 200 and parent.email in page.content.decode()


def test_patient_sees_and_ends_their_proxies(client, patient, parent, other_patient):
    grant = make_grant(patient.patient, parent, scope="full")
    login_verified(client, patient)
    page = client.get("/people/").content.decode()
    assert "Alex Doe" in page and "Parent" in page
    assert client.post(f"/people/{grant.pk}/end/").status_code == 302
    grant.refresh_from_db()
    assert grant.ended_at is not None and grant.ended_by == "You"


def test_another_patients_grant_is_a_404(client, patient, parent, other_patient):
    grant = make_grant(other_patient.patient, parent)
    login_verified(client, patient)
    assert client.post(f"/people/{grant.pk}/end/").status_code == 404
    assert ProxyGrant.objects.get(pk=grant.pk).ended_at is None



def test_the_patient_sees_when_a_proxy_last_used_the_access(client, patient, parent):
    """Last use: the proxy's newest event in the patient's log (no write per request)."""
    from proxies.selectors import proxies_of
    from tests.factories import actor_of

    study = make_study(patient.patient, "MR knee")
    grant = make_grant(patient.patient, parent, relationship="caregiver")
    ProxyGrant.objects.filter(pk=grant.pk).update(last_used_at=None)
    assert proxies_of(actor=actor_of(patient))[0].last_use is None
    acting_client(client, parent, grant)
    ProxyGrant.objects.filter(pk=grant.pk).update(last_used_at=None)  # only the log now
    client.get(f"/studies/{study.pk}/")
    event = AccessEvent.objects.get(patient=patient.patient, actor_type="proxy")
    assert proxies_of(actor=actor_of(patient))[0].last_use == event.occurred_at


def test_in_the_proxys_view_of_the_log_you_is_the_proxy_and_the_patient_is_named(client, child, parent, child_study):
    # A parent reading their child's log read "You viewed your MR knee." for what the child did,
    # and their own looks under their own name with no "You".
    import html
    import re

    from audit.services import record_access

    record_access(patient=child, study=child_study, action="view", purpose="patient_request", actor_type="patient",
                  actor_name="Patient (self)")
    acting_client(client, parent, make_grant(child, parent))
    client.get(f"/studies/{child_study.pk}/")
    log = client.get("/access-log/?show=all").content.decode()
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", log)))
    assert "Sam Doe viewed their MR knee." in text
    assert "You viewed Sam Doe's MR knee." in text
    assert "You viewed your MR knee." not in text


def test_in_the_proxys_summary_and_tabs_their_own_looks_are_not_others(client, child, parent, child_study):
    # The proxy's summary counted their own looks as "Accesses by others" (the counts filtered
    # on the patient's actor type), "Your own actions" listed the patient's, and the proxy's
    # second visit called their own first visit "new".
    import html
    import re

    from audit.services import record_access

    def text(url: str) -> str:
        page = client.get(url).content.decode()
        return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))

    record_access(patient=child, study=child_study, action="view", purpose="patient_request", actor_type="patient",
                  actor_name="Patient (self)")
    record_access(patient=child, study=child_study, action="view", purpose="treatment", actor_type="clinician",
                  actor_name="Dr Ada Lowe", organization="Northbrook Clinic")
    other_parent = make_grant(child, _other_parent(), relationship="caregiver")
    record_access(patient=child, study=child_study, action="view", purpose="patient_request", actor_type="proxy",
                  actor_name="Kim Roe", actor_ref=f"user:{other_parent.proxy_id}", role="caregiver acting on behalf of the patient")
    acting_client(client, parent, make_grant(child, parent))
    client.get(f"/studies/{child_study.pk}/")
    client.get(f"/studies/{child_study.pk}/")
    client.get("/access-log/")  # a first visit, the proxy's own

    others = text("/access-log/")
    # Others: the clinician and the other proxy; not the patient's own view, not this proxy's
    # two views and two visits of the log.
    assert re.search(r"Accesses by others (\d+)", others).group(1) == "2"
    assert "Not counted above: 4 actions of your own" in others
    assert "Nor are Sam Doe’s own actions" in others
    assert "Dr Ada Lowe" in others and "Kim Roe" in others
    assert "You viewed" not in others and "Sam Doe viewed their" not in others
    assert "Nothing new by others since your last visit" in others  # the last visit is the proxy's own

    response = client.get("/access-log/?show=own")
    days = response.context["own"].days
    # This proxy's own: two looks at the study and three visits of the log, the patient's none.
    assert sum(d.total for d in days) == 5
    summary = response.context["summary"]
    assert summary.series.get("proxy") is not None and sum(summary.series["proxy"]) == 1  # Kim Roe's look
    assert "patient" not in summary.series


def _other_parent():
    from tests.factories import AuthenticatorAppFactory, UserFactory

    user = UserFactory(email="kim.roe@example.net")
    AuthenticatorAppFactory(user=user)
    return user

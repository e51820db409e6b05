"""Incident notices reach exactly the patients the criteria choose (study, accessor
organisation, time window), in the portal and by email with the office's message."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from flags import services
from flags.models import FlagEvent, Incident
from notices.models import Notice
from tests.conftest import _patient_user, login_verified
from tests.factories import actor_of
from tests.flags.conftest import make_event, make_study

pytestmark = pytest.mark.django_db

MESSAGE = "An AI vendor accessed imaging without a valid agreement between 1 and 3 March. We have stopped it."


@pytest.fixture
def scene(patient, officer):
    """Five patients; the incident is Acme AI Ltd between day -10 and day -5."""
    now = timezone.now()
    inside = now - dt.timedelta(days=7)
    people = {name: _patient_user() for name in ("hit", "hit_other_case", "outside_window", "other_org", "no_events")}
    people["reporter"] = patient
    studies = {name: make_study(u.patient) for name, u in people.items()}
    make_event(patient.patient, study=studies["reporter"], when=inside)
    make_event(people["hit"].patient, study=studies["hit"], when=inside)
    make_event(people["hit_other_case"].patient, study=studies["hit_other_case"], organization="ACME AI LTD", when=inside)
    make_event(people["outside_window"].patient, study=studies["outside_window"], when=now - dt.timedelta(days=20))
    make_event(people["other_org"].patient, study=studies["other_org"], organization="Beta Research", when=inside)
    reporter_event = patient.patient.access_events.get(organization="Acme AI Ltd")
    flag = services.flag_create(
        actor=actor_of(patient), access_event_id=reporter_event.pk, category="unfamiliar_accessor", description="Who?"
    )
    services.flag_claim(actor=actor_of(officer), flag=flag)
    return {"people": people, "studies": studies, "flag": flag, "start": now - dt.timedelta(days=10), "end": now - dt.timedelta(days=5)}


def test_incident_by_organisation_and_window_reaches_exactly_those_patients(officer, scene, django_capture_on_commit_callbacks):
    people = scene["people"]
    criteria = services.IncidentCriteria(window_start=scene["start"], window_end=scene["end"], organization="acme ai ltd")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        incident = services.incident_confirm(actor=actor_of(officer), flag=scene["flag"], criteria=criteria, subject="About your scans", message=MESSAGE)
    expected = {people[n].patient.pk for n in ("reporter", "hit", "hit_other_case")}
    assert set(Notice.objects.filter(key=f"incident:{incident.pk}").values_list("patient_id", flat=True)) == expected
    assert incident.patients_notified == 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted(people[n].email for n in ("reporter", "hit", "hit_other_case"))
    assert all(MESSAGE in m.body for m in mail.outbox)
    assert scene["flag"].events.filter(kind=FlagEvent.Kind.INCIDENT).count() == 1


def test_incident_limited_to_a_study(officer, scene, django_capture_on_commit_callbacks):
    people = scene["people"]
    criteria = services.IncidentCriteria(
        window_start=scene["start"], window_end=scene["end"], organization="Acme AI Ltd", study=scene["studies"]["hit"]
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.incident_confirm(actor=actor_of(officer), flag=scene["flag"], criteria=criteria, subject="About your scan", message=MESSAGE)
    assert list(Notice.objects.filter(kind="incident").values_list("patient_id", flat=True)) == [people["hit"].patient.pk]
    assert [m.to for m in mail.outbox] == [[people["hit"].email]]


def test_incident_needs_an_organisation_or_a_study(officer, scene):
    criteria = services.IncidentCriteria(window_start=scene["start"], window_end=scene["end"])
    with pytest.raises(services.ValidationError):
        services.incident_confirm(actor=actor_of(officer), flag=scene["flag"], criteria=criteria, subject="s", message="m")
    assert not Incident.objects.exists() and not Notice.objects.filter(kind="incident").exists()


def test_incident_view_notifies_and_patients_see_it_in_the_portal(client: Client, officer, scene, django_capture_on_commit_callbacks):
    login_verified(client, officer)
    fmt = "%Y-%m-%dT%H:%M"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("flags-incident", args=[scene["flag"].pk]),
            {
                "organization": "Acme AI Ltd",
                "window_start": timezone.localtime(scene["start"]).strftime(fmt),
                "window_end": timezone.localtime(scene["end"]).strftime(fmt),
                "subject": "About your scans",
                "message": MESSAGE,
            },
            follow=True,
        )
    assert "3 patients notified" in response.content.decode()
    hit = scene["people"]["hit"]
    patient_client = login_verified(Client(), hit)
    assert MESSAGE in patient_client.get(reverse("flags-mine")).content.decode()
    bystander = login_verified(Client(), scene["people"]["other_org"])
    assert MESSAGE not in bystander.get(reverse("flags-mine")).content.decode()


def test_only_the_holder_may_confirm_an_incident(client: Client, second_officer, scene):
    login_verified(client, second_officer)
    response = client.post(reverse("flags-incident", args=[scene["flag"].pk]), {"organization": "Acme AI Ltd"})
    assert response.status_code == 404
    assert not Incident.objects.exists()

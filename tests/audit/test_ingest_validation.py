"""build_event's quick check (audit.services._plainly_valid) never lets through what
``full_clean`` would refuse: every bad value still raises ``ValidationError``, with Django's message."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.services import build_event

pytestmark = pytest.mark.django_db


def fields(patient, **overrides) -> dict:
    base = {"patient": patient, "action": "view", "purpose": "treatment", "actor_type": "clinician",
            "actor_name": "Dr Roe", "organization": "Mercy", "source": "api", "source_event_id": "s/1",
            "occurred_at": timezone.now() - dt.timedelta(minutes=1), "details": {"reported_by": "s"}}
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"action": "peek"}, "Value 'peek' is not a valid choice."),
        ({"source": "fax"}, "Value 'fax' is not a valid choice."),
        ({"purpose": ""}, "This field cannot be blank."),
        ({"actor_name": "x" * 201}, "Ensure this value has at most 200 characters (it has 201)."),
        ({"source_event_id": "s/" + "x" * 199}, "Ensure this value has at most 200 characters (it has 201)."),
        ({"ip": "not-an-ip"}, "Enter a valid IPv4 or IPv6 address."),
    ],
)
def test_bad_values_are_refused_as_full_clean_refuses_them(record, overrides, message):
    with pytest.raises(ValidationError) as caught:
        build_event(**fields(record, **overrides))
    assert message in caught.value.messages


def test_good_events_pass_both_checks(record):
    for overrides in ({}, {"ip": "10.0.0.1", "user_agent": "Mozilla"}, {"source_event_id": None, "role": ""}):
        event = build_event(**fields(record, **overrides))
        event.full_clean(exclude=["seq", "prev_hash", "hash", "patient", "study"], validate_unique=False,
                         validate_constraints=False)

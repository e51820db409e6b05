"""Recording access events: the chain, the vocabulary, idempotency, portal actors."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from audit.models import GENESIS_HASH, AccessEvent, ChainHead
from audit.services import (
    HASHED_FIELDS,
    chain_verify,
    event_hash,
    event_payload,
    record_access,
)
from core import access_log
from tests.audit.conftest import clinician_view, make_study
from tests.factories import UserFactory, actor_of

# --- the chain -----------------------------------------------------------------------------


def test_first_event_starts_the_chain(record):
    event = clinician_view(record)

    assert event.pk is not None
    assert event.seq == 1
    assert event.prev_hash == GENESIS_HASH == "0" * 64
    assert len(event.hash) == 64 and int(event.hash, 16) >= 0
    head = ChainHead.objects.get(patient=record)
    assert (head.seq, head.last_hash) == (1, event.hash)


def test_each_event_links_to_the_previous_one(record):
    events = [clinician_view(record) for _ in range(4)]

    assert [e.seq for e in events] == [1, 2, 3, 4]
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    assert len({e.hash for e in events}) == 4
    assert ChainHead.objects.get(patient=record).last_hash == events[-1].hash


def test_every_patient_has_an_own_chain(record, other_record):
    a1 = clinician_view(record)
    b1 = clinician_view(other_record)
    a2 = clinician_view(record)

    assert (a1.seq, b1.seq, a2.seq) == (1, 1, 2)
    assert b1.prev_hash == GENESIS_HASH
    assert a2.prev_hash == a1.hash


def test_stored_event_hashes_the_same_after_reading_it_back(record):
    """What the database gives back (jsonb numbers, inet, timestamptz) must hash as written."""
    study = make_study(record)
    event = record_access(
        patient=record,
        study=study,
        action="download",
        purpose="patient_request",
        actor_type="patient",
        actor_name="Patient (self)",
        occurred_at=dt.datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        ip="2001:DB8:0:0::1",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Ünïcödé",
        details={"z": 1, "a": [1.0, 1e16, 0.1, -2.5e-7], "nested": {"b": None, "ä": "ü", "t": True}},
    )

    stored = AccessEvent.objects.get(pk=event.pk)

    assert stored.hash == event.hash
    assert event_hash(stored) == stored.hash
    assert stored.ip == "2001:db8::1"
    assert chain_verify(record).ok


def test_payload_is_canonical(record):
    event = clinician_view(record, occurred_at=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    payload = event_payload(event)

    assert set(payload) == set(HASHED_FIELDS)
    assert payload["occurred_at"] == "2024-01-02T03:04:05.000000Z"
    assert payload["recorded_at"].endswith("Z")
    assert payload["patient"] == str(record.pk)
    assert payload["study"] is None
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest() == event.hash


CHANGES = {
    "occurred_at": lambda e: setattr(e, "occurred_at", e.occurred_at + dt.timedelta(microseconds=1)),
    "recorded_at": lambda e: setattr(e, "recorded_at", e.recorded_at - dt.timedelta(seconds=1)),
    "patient": lambda e: setattr(e, "patient_id", e.patient_id + 1),
    "study": lambda e: setattr(e, "study_id", 424242),
    "actor_type": lambda e: setattr(e, "actor_type", "researcher"),
    "actor_name": lambda e: setattr(e, "actor_name", "Dr. Ada Reyez"),
    "actor_ref": lambda e: setattr(e, "actor_ref", "ehr:prac-78"),
    "organization": lambda e: setattr(e, "organization", "Other Hospital"),
    "role": lambda e: setattr(e, "role", "Nurse"),
    "purpose": lambda e: setattr(e, "purpose", "ai_training"),
    "action": lambda e: setattr(e, "action", "export"),
    "outcome": lambda e: setattr(e, "outcome", "denied"),
    "source": lambda e: setattr(e, "source", "import"),
    "source_event_id": lambda e: setattr(e, "source_event_id", "evt-2"),
    "ip": lambda e: setattr(e, "ip", "198.51.100.8"),
    "user_agent": lambda e: setattr(e, "user_agent", "curl/8.0"),
    "details": lambda e: e.details.update(frames=2),
    "seq": lambda e: setattr(e, "seq", e.seq + 1),
    "prev_hash": lambda e: setattr(e, "prev_hash", "f" * 64),
}


def test_every_hashed_field_has_a_change_case():
    assert set(CHANGES) == set(HASHED_FIELDS)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_any_field_changes_the_hash(record, field):
    event = clinician_view(record, source_event_id="evt-1", ip="198.51.100.7", details={"frames": 1})
    changed = copy.deepcopy(event)

    CHANGES[field](changed)

    assert event_hash(event) == event.hash
    assert event_hash(changed) != event.hash


# --- vocabulary and validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("action", "peek"),
        ("purpose", "marketing"),
        ("actor_type", "hacker"),
        ("outcome", "maybe"),
        ("source", "carrier_pigeon"),
        ("action", ""),
    ],
)
def test_unknown_vocabulary_is_rejected_and_nothing_is_written(record, field, value):
    with pytest.raises(ValidationError) as exc:
        clinician_view(record, **{field: value})

    assert field in exc.value.message_dict
    assert not AccessEvent.objects.exists()
    assert not ChainHead.objects.filter(patient=record, seq__gt=0).exists()


def test_every_documented_choice_is_accepted(record):
    for actor_type in AccessEvent.ActorType.values:
        clinician_view(record, actor_type=actor_type)
    for purpose in AccessEvent.Purpose.values:
        clinician_view(record, purpose=purpose)
    for action in AccessEvent.Action.values:
        clinician_view(record, action=action)
    for outcome in AccessEvent.Outcome.values:
        clinician_view(record, outcome=outcome)

    assert AccessEvent.objects.count() == 9 + 10 + 10 + 3  # 9 actor types: proxy added by issue 21
    assert chain_verify(record).ok


def test_choices_have_human_labels():
    assert AccessEvent.Purpose.AI_TRAINING.label == "AI training"
    assert AccessEvent.ActorType.AI_VENDOR.label == "AI vendor"
    assert AccessEvent.Action.VIEW.label == "Viewed"


def test_a_study_of_another_patient_is_rejected(record, other_record):
    with pytest.raises(ValidationError) as exc:
        clinician_view(record, study=make_study(other_record))

    assert "study" in exc.value.message_dict
    assert not AccessEvent.objects.exists()


def test_a_time_without_zone_is_rejected(record):
    with pytest.raises(ValidationError) as exc:
        clinician_view(record, occurred_at=dt.datetime(2024, 1, 1, 12, 0))

    assert "occurred_at" in exc.value.message_dict


@pytest.mark.parametrize("details", [["a", "list"], "text", {"x": float("nan")}, {"x": object()}])
def test_details_must_be_a_json_object(record, details):
    with pytest.raises(ValidationError) as exc:
        clinician_view(record, details=details)

    assert "details" in exc.value.message_dict


def test_over_long_fields_are_rejected_but_a_long_user_agent_is_cut(record):
    with pytest.raises(ValidationError):
        clinician_view(record, organization="x" * 201)

    event = clinician_view(record, user_agent="A" * 1000)

    assert event.user_agent == "A" * 300
    assert chain_verify(record).ok


def test_an_explicit_time_is_kept_and_recorded_at_is_now(record):
    when = timezone.now() - dt.timedelta(days=30)
    before = timezone.now()

    event = clinician_view(record, occurred_at=when)

    assert event.occurred_at == when
    assert before <= event.recorded_at <= timezone.now()


# --- transactions and idempotency ---------------------------------------------------------


def test_an_action_that_rolls_back_takes_its_event_with_it(record):
    clinician_view(record)

    with pytest.raises(RuntimeError), transaction.atomic():
        clinician_view(record)
        raise RuntimeError("the action failed after recording")

    assert list(AccessEvent.objects.values_list("seq", flat=True)) == [1]
    assert ChainHead.objects.get(patient=record).seq == 1
    assert chain_verify().ok


def test_the_same_source_event_twice_is_refused(record):
    first = clinician_view(record, source="api", source_event_id="pacs-123")

    with pytest.raises(IntegrityError):
        clinician_view(record, source="api", source_event_id="pacs-123")

    # The savepoint kept the caller's transaction usable and the chain untouched.
    second = clinician_view(record, source="api", source_event_id="pacs-124")
    assert second.seq == 2 and second.prev_hash == first.hash
    assert chain_verify(record).ok


def test_the_same_event_id_from_another_source_is_a_different_event(record):
    clinician_view(record, source="api", source_event_id="42")
    clinician_view(record, source="import", source_event_id="42")

    assert AccessEvent.objects.filter(source_event_id="42").count() == 2


def test_events_without_a_source_id_may_repeat(record):
    for _ in range(3):
        clinician_view(record, source="api", source_event_id=None)
    clinician_view(record, source="api", source_event_id="")

    assert AccessEvent.objects.filter(source_event_id__isnull=True).count() == 4


# --- portal actors ------------------------------------------------------------------------


def _actor(user, user_agent: str = ""):
    """The Actor of ``user``'s request from 203.0.113.9, as the middleware builds it."""
    return actor_of(user, ip="203.0.113.9", user_agent=user_agent)


def test_a_patient_viewing_their_own_record_is_recorded_as_themselves(patient):
    record = patient.patient
    study = make_study(record)

    event = access_log.record(
        actor=_actor(patient, user_agent="Firefox/" + "9" * 400), patient=record, action="view", study=study
    )

    assert event.actor_type == "patient"
    assert event.actor_name == "Patient (self)"
    assert event.actor_ref == f"user:{patient.pk}"
    assert event.purpose == "patient_request"
    assert event.source == "portal"
    assert event.study == study
    assert event.ip == "203.0.113.9"
    assert event.user_agent == ("Firefox/" + "9" * 400)[:300]
    # Neither the patient's name nor their email is written into their own log.
    assert record.name not in json.dumps(event_payload(event))
    assert patient.email not in json.dumps(event_payload(event))


@override_settings(HOSPITAL_NAME="St. Test Infirmary")
def test_a_privacy_officer_is_recorded_with_role_and_hospital(officer, patient):
    event = access_log.record(
        actor=_actor(officer).investigating(patient.patient.pk), patient=patient.patient, action="view", details={"flag": 7}
    )

    assert event.actor_type == "privacy_office"
    assert event.actor_name == officer.public_name
    assert event.actor_ref == f"user:{officer.pk}"
    assert event.organization == "St. Test Infirmary"
    assert event.role == "Privacy officer"
    assert event.purpose == "privacy_investigation"
    assert event.details == {"flag": 7}


def test_the_purpose_can_be_given(patient):
    event = access_log.record(actor=_actor(patient), patient=patient.patient, action="export", purpose="legal")

    assert event.purpose == "legal"


def test_another_patient_cannot_be_recorded_as_accessing_a_record(patient, other_patient):
    with pytest.raises(PermissionDenied):
        access_log.record(actor=_actor(other_patient), patient=patient.patient, action="view")

    assert not AccessEvent.objects.exists()


def test_an_administrator_is_not_a_portal_actor(patient):
    admin = UserFactory(role="administrator", is_staff=True, is_superuser=True)

    with pytest.raises(PermissionDenied):
        access_log.record(actor=_actor(admin), patient=patient.patient, action="view")


def test_an_anonymous_request_is_refused(patient):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        access_log.record(actor=_actor(AnonymousUser()), patient=patient.patient, action="view")


def test_recording_never_logs_the_patient_name(patient, caplog):
    with caplog.at_level("DEBUG"):
        access_log.record(actor=_actor(patient), patient=patient.patient, action="view")
        chain_verify()

    assert patient.patient.name not in caplog.text


@given(st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=st.timezones()))
def test_the_fast_utc_format_is_strftimes(value):
    # The hash covers these strings: a faster formatting must give exactly what strftime gives
    # (every chain written before it must still verify), including years below 1000.
    from audit.services import _UTC_FORMAT, _utc

    assert _utc(value) == value.astimezone(dt.UTC).strftime(_UTC_FORMAT)

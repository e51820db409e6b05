"""``manage.py verify_audit`` finds every kind of tampering (docs/security.md §13).

The attacker here has database superuser rights: they switch the append-only trigger off
(inside the test's transaction, so it comes back afterwards), change rows, and switch it on again.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit.models import AccessEvent, ChainHead
from audit.services import VerifyResult, _Chain, _settle, chain_verify, event_hash
from tests.audit.conftest import clinician_view
from tests.factories import PatientFactory


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as exc:
        verify(*args)
    return str(exc.value)


def as_superuser(statement: str, params=()) -> None:
    """Run SQL with the append-only trigger out of the way, then put it back."""
    with connection.cursor() as cursor:
        # PostgreSQL refuses ALTER TABLE while deferred foreign-key checks are queued.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE audit_accessevent DISABLE TRIGGER USER")
        cursor.execute(statement, params)
        cursor.execute("ALTER TABLE audit_accessevent ENABLE TRIGGER USER")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.fixture
def victim(record, make_chain):
    """Five events for one patient (the one the attacker edits)."""
    return record, make_chain(record, 5)


@pytest.fixture
def bystander(victim, make_chain):
    """A second patient, created after the victim, with an intact chain."""
    patient = PatientFactory()
    return patient, make_chain(patient, 3)


# --- clean chains -------------------------------------------------------------------------


def test_clean_chains_verify(victim, bystander):
    out = verify()

    assert out.strip() == "OK: 8 events in 2 chains verified; append-only triggers in place."
    assert chain_verify() == VerifyResult(ok=True, checked=8, chains=2)


def test_one_patient_by_mrn(victim, bystander):
    patient, _ = bystander

    out = verify("--mrn", patient.mrn)

    assert "OK: 3 events in 1 chain verified" in out
    assert f"{patient.issuer}/{patient.mrn}" in out


def test_an_empty_log_verifies(db):
    assert "OK: 0 events in 0 chains" in verify()


def test_unknown_mrn_is_an_error(db):
    assert "No patient with MRN NOPE" in broken("--mrn", "NOPE")


def test_ambiguous_mrn_needs_the_issuer(db):
    PatientFactory(mrn="DUP", issuer="A")
    PatientFactory(mrn="DUP", issuer="B")

    assert "pass --issuer" in broken("--mrn", "DUP")
    assert "0 events" in verify("--mrn", "DUP", "--issuer", "B")


# --- tampering ----------------------------------------------------------------------------


def _expect_break(events_or_id, patient, *, contains: str, mrn_only: bool = False) -> str:
    message = broken("--mrn", patient.mrn) if mrn_only else broken()
    bad = events_or_id if isinstance(events_or_id, int | type(None)) else events_or_id.pk
    if bad is not None:
        assert f"at event {bad} " in message
    assert f"patient {patient.issuer}/{patient.mrn}" in message
    assert patient.name not in message
    assert contains in message
    return message


def test_an_edited_field_is_named(victim, bystander):
    patient, events = victim
    as_superuser("UPDATE audit_accessevent SET organization = %s WHERE id = %s", ["Nobody", events[2].pk])

    _expect_break(events[2], patient, contains="the event was altered")
    result = chain_verify()
    assert (result.ok, result.first_bad_event_id, result.patient_id) == (False, events[2].pk, patient.pk)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(victim, bystander):
    patient, events = victim
    forged = AccessEvent.objects.get(pk=events[2].pk)
    forged.actor_type = "staff"
    as_superuser(
        "UPDATE audit_accessevent SET actor_type = %s, hash = %s WHERE id = %s",
        ["staff", event_hash(forged), forged.pk],
    )

    _expect_break(events[3], patient, contains="does not link to event 3")


def test_a_deleted_event_is_found(victim, bystander):
    patient, events = victim
    as_superuser("DELETE FROM audit_accessevent WHERE id = %s", [events[1].pk])

    _expect_break(events[2], patient, contains="event 2 is missing (deleted)")


def test_a_deleted_last_event_is_found_through_the_chain_head(victim, bystander):
    patient, events = victim
    as_superuser("DELETE FROM audit_accessevent WHERE id = %s", [events[4].pk])

    message = _expect_break(None, patient, contains="the events after it were deleted")
    assert "no single event" in message
    assert f"(id {events[3].pk})" in message


def test_a_whole_deleted_chain_is_found(victim, bystander):
    patient, _ = victim
    as_superuser("DELETE FROM audit_accessevent WHERE patient_id = %s", [patient.pk])

    _expect_break(None, patient, contains="records 5 events")


def test_two_swapped_events_are_found(victim, bystander):
    patient, events = victim
    # Three steps: (patient, seq) is unique, as it would be for the attacker too.
    as_superuser("UPDATE audit_accessevent SET seq = 1000 WHERE id = %s", [events[1].pk])
    as_superuser("UPDATE audit_accessevent SET seq = 2 WHERE id = %s", [events[2].pk])
    as_superuser("UPDATE audit_accessevent SET seq = 3 WHERE id = %s", [events[1].pk])

    # The event now in second place (originally third) no longer links to the first.
    _expect_break(events[2], patient, contains="does not link")


def test_a_forged_event_inserted_in_the_middle_is_found(victim, bystander):
    patient, events = victim
    for event in reversed(events[2:]):
        as_superuser("UPDATE audit_accessevent SET seq = seq + 1 WHERE id = %s", [event.pk])
    # The attacker knows the algorithm: the forged event itself is perfectly hashed and linked.
    forged = AccessEvent(
        patient=patient,
        occurred_at=events[1].occurred_at,
        recorded_at=events[1].recorded_at,
        actor_type="clinician",
        actor_name="Dr. Nobody",
        purpose="treatment",
        action="view",
        source="api",
        details={},
        seq=3,
        prev_hash=events[1].hash,
    )
    forged.hash = event_hash(forged)
    forged.save(force_insert=True)

    # The original third event, pushed to fourth place, still points at the second (and its
    # hash covers its old position, so rewriting the pointer alone would not help either).
    _expect_break(events[2], patient, contains="event 4 does not link to event 3")


def test_a_forged_event_appended_without_the_head_is_found(victim, bystander):
    patient, events = victim
    forged = AccessEvent(
        patient=patient,
        occurred_at=events[4].occurred_at,
        recorded_at=events[4].recorded_at,
        actor_type="patient",
        purpose="patient_request",
        action="export",
        details={},
        seq=6,
        prev_hash=events[4].hash,
    )
    forged.hash = event_hash(forged)
    forged.save(force_insert=True)

    _expect_break(forged.pk, patient, contains="past the chain head")


def test_a_rewritten_chain_head_is_found(victim, bystander):
    patient, events = victim
    ChainHead.objects.filter(patient=patient).update(last_hash="a" * 64)

    _expect_break(events[4], patient, contains="the head or the last event was rewritten")


def test_a_missing_chain_head_is_found(victim, bystander):
    patient, events = victim
    ChainHead.objects.filter(patient=patient).delete()

    _expect_break(events[4], patient, contains="no chain head")


def test_the_first_broken_chain_is_reported_and_others_still_verify_alone(victim, bystander):
    patient, events = victim
    other, _ = bystander
    as_superuser("UPDATE audit_accessevent SET role = %s WHERE id = %s", ["Janitor", events[0].pk])

    _expect_break(events[0], patient, contains="altered", mrn_only=True)
    assert "OK: 3 events in 1 chain" in verify("--mrn", other.mrn)


def test_disabled_triggers_fail_even_when_the_chains_verify(victim):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE audit_accessevent DISABLE TRIGGER USER")

    message = broken()

    assert "The chains verify (5 events)" in message
    assert "append-only triggers on audit_accessevent are missing or disabled" in message


# --- verifying a live log -----------------------------------------------------------------


def test_events_written_after_the_stream_was_read_are_verified_not_flagged(victim):
    """The stream and the head are separate reads; a writer in between is not tampering."""
    patient, events = victim
    chain = _Chain(patient.pk)
    for event in events[:3]:  # the stream's older snapshot
        assert chain.feed(event) is None

    checked, bad_id, reason = _settle(chain)

    assert (checked, bad_id, reason) == (2, None, None)
    assert (chain.seq, chain.last_hash) == (5, events[4].hash)


@pytest.mark.django_db(transaction=True)
def test_verify_outside_a_transaction_reports_a_committed_deletion():
    """Autocommit: the streaming cursors and the head lock work on a real, committed log."""
    first, second = PatientFactory(), PatientFactory()
    events = [clinician_view(first) for _ in range(3)]
    [clinician_view(second) for _ in range(2)]
    with transaction.atomic():
        as_superuser("DELETE FROM audit_accessevent WHERE id = %s", [events[2].pk])

    message = broken()

    assert f"patient {first.issuer}/{first.mrn}" in message
    assert "the events after it were deleted" in message
    assert "OK: 2 events in 1 chain" in verify("--mrn", second.mrn)

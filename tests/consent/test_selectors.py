"""``consent_state_at``: the decision in force at a moment (for other apps), and the demo data."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audit.models import AccessEvent
from audit.services import chain_verify
from consent.demo import build_demo_consent
from consent.models import ConsentDecision, ConsentPolicy, Recipient
from consent.selectors import consent_cards, consent_state_at, pending_policy
from consent.services import _write_decision
from tests.consent.conftest import make_study
from tests.factories import actor_of

pytestmark = pytest.mark.django_db


def decide(record, policy, scope, decision, when, study=None):
    return _write_decision(patient=record, scope=scope, decision=decision, study=study, policy=policy, actor=None,
                           channel="portal", kind="change", recorded_by="patient", decided_at=when)


def test_consent_state_at_returns_the_decision_in_force(patient, policy):
    record = patient.patient
    now = timezone.now()
    study = make_study(record)
    yes = decide(record, policy, "research", "granted", now - dt.timedelta(days=10))
    no = decide(record, policy, "research", "refused", now - dt.timedelta(days=5))
    exception = decide(record, policy, "research", "granted", now - dt.timedelta(days=3), study=study)
    assert consent_state_at(record, "research", now - dt.timedelta(days=20)) is None
    state = consent_state_at(record, "research", now - dt.timedelta(days=7))
    assert state["decision_id"] == yes.pk and state["allowed"] is True and state["policy_version"] == 1
    assert consent_state_at(record, "research", now)["decision_id"] == no.pk
    assert consent_state_at(record, "research", now, study=study)["decision_id"] == exception.pk
    assert consent_state_at(record, "research", now - dt.timedelta(days=4), study=study)["decision_id"] == no.pk
    assert consent_state_at(record, "ai_training", now) is None
    with pytest.raises(ValueError):
        consent_state_at(record, "marketing", now)


def test_demo_consent(patient, officer):
    record = patient.patient
    make_study(record)
    make_study(record)
    build_demo_consent(record)
    build_demo_consent(record)  # idempotent
    assert ConsentPolicy.objects.count() == 2
    decisions = ConsentDecision.objects.filter(patient=record)
    assert decisions.count() == 5
    paper = decisions.get(channel="paper")
    assert paper.scope == "teaching" and paper.actor == officer
    actor = actor_of(patient)
    policy, stale = pending_policy(actor=actor, patient=record)
    assert policy.version == 2 and len(stale) == 4  # decided under v1, waiting for confirmation
    cards = {c.scope: c for c in consent_cards(actor=actor, patient=record)}
    assert cards["ai_training"].allowed and cards["research"].allowed and not cards["teaching"].allowed
    assert len(cards["research"].exceptions) == 1
    assert Recipient.objects.count() == 4
    assert AccessEvent.objects.filter(patient=record, action="modify").count() == 5
    assert chain_verify(record).ok

"""The newest decision wins, in the cohort API and in the single check: a patient who said yes and
then withdrew is a no, and one who said no and then yes is a yes. Newest by when it was decided,
also when a decision given earlier was recorded later (a past decision loaded afterwards)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from consent.models import ConsentDecision
from consent.services import _write_decision
from tests.consent.conftest import make_study

pytestmark = pytest.mark.django_db

GRANTED, REFUSED = ConsentDecision.Decision.GRANTED, ConsentDecision.Decision.REFUSED


def decide(record, policy, decision, *, days_ago: int, study=None) -> ConsentDecision:
    return _write_decision(patient=record, scope="ai_training", decision=decision, study=study, policy=policy, actor=None,
                           channel="portal", kind="change", recorded_by="patient",
                           decided_at=timezone.now() - dt.timedelta(days=days_ago))


def cohort(client, token, uids) -> dict:
    response = client.post("/api/v1/consent/cohort", {"scope": "ai_training", "study_uids": uids},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


def check(client, token, record, study=None) -> dict:
    params = {"issuer": record.issuer, "mrn": record.mrn, "scope": "ai_training"}
    if study is not None:
        params["study_uid"] = study.study_uid
    response = client.get("/api/v1/consent/check", params, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(("older", "newer", "allowed"), [(GRANTED, REFUSED, False), (REFUSED, GRANTED, True)])
def test_the_newest_all_studies_decision_wins(client, patient, policy, ai_token, older, newer, allowed):
    record = patient.patient
    study = make_study(record)
    decide(record, policy, older, days_ago=2)
    latest = decide(record, policy, newer, days_ago=1)

    body = cohort(client, ai_token, [study.study_uid])
    assert body["permitted"] == ([study.study_uid] if allowed else [])
    assert body["not_permitted"] == ([] if allowed else [study.study_uid])

    answer = check(client, ai_token, record)
    assert answer["allowed"] is allowed and answer["decision"]["id"] == latest.pk
    answer = check(client, ai_token, record, study)
    assert answer["allowed"] is allowed and answer["decision"]["id"] == latest.pk


@pytest.mark.parametrize(("older", "newer", "allowed"), [(GRANTED, REFUSED, False), (REFUSED, GRANTED, True)])
def test_the_newest_decision_on_one_study_wins(client, patient, policy, ai_token, older, newer, allowed):
    """A study's own decisions, over an all-studies yes that stays in force for the others."""
    record = patient.patient
    kept, excepted = make_study(record), make_study(record)
    decide(record, policy, GRANTED, days_ago=3)
    decide(record, policy, older, days_ago=2, study=excepted)
    latest = decide(record, policy, newer, days_ago=1, study=excepted)

    body = cohort(client, ai_token, [kept.study_uid, excepted.study_uid])
    assert body["permitted"] == ([kept.study_uid, excepted.study_uid] if allowed else [kept.study_uid])

    answer = check(client, ai_token, record, excepted)
    assert answer["allowed"] is allowed and answer["basis"] == "study_decision"
    assert answer["decision"]["id"] == latest.pk


def test_newest_means_decided_last_not_recorded_last(client, patient, other_patient, policy, ai_token):
    """The withdrawal is recorded first; a yes given a week earlier is loaded after it (a higher
    id). The withdrawal is the newest decision, for the cohort and for the check."""
    a, b = patient.patient, other_patient.patient
    sa, sb = make_study(a), make_study(b)
    withdrawal = decide(a, policy, REFUSED, days_ago=1)
    decide(a, policy, GRANTED, days_ago=8)
    # And the other way round for a second patient in the same request: yes is newest.
    yes = decide(b, policy, GRANTED, days_ago=1)
    decide(b, policy, REFUSED, days_ago=8)

    body = cohort(client, ai_token, [sa.study_uid, sb.study_uid])
    assert body["permitted"] == [sb.study_uid] and body["not_permitted"] == [sa.study_uid]

    answer = check(client, ai_token, a)
    assert answer["allowed"] is False and answer["decision"]["id"] == withdrawal.pk
    answer = check(client, ai_token, b)
    assert answer["allowed"] is True and answer["decision"]["id"] == yes.pk

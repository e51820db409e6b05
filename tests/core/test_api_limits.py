"""The APIs under abuse (docs/security.md §22; issue 17, found 4 and 6): per-token rate limits with
429 and Retry-After in the real Redis cache, a tighter limit on lookups that find nothing, one
404 for every lookup that finds nothing, misses noted for the privacy office, JSON 413 for any
oversize body on every POST endpoint."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.test import Client, RequestFactory
from django.urls import get_resolver

from accounts.services import service_account_create
from audit.ingest import UNKNOWN
from audit.models import AccessEvent
from core import ratelimit
from core.actor import Actor
from core.api import ApiError
from core.models import ServiceAccount, ServiceRequestDay, ServiceRequestMiss
from core.openapi import document
from core.service_activity import subject_hash
from tests.consent.conftest import make_study

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/consent/check"


@pytest.fixture(autouse=True)
def _redis_cache():
    # The limits are only as good as a cache every web worker shares.
    assert django_settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"


@pytest.fixture
def tokens(db) -> dict[str, str]:
    _, a = service_account_create(name="broker-a", organization="Research Broker", scopes=["consent:read", "audit:write"], actor_type="researcher")
    _, b = service_account_create(name="broker-b", organization="Other Broker", scopes=["consent:read", "audit:write"], actor_type="researcher")
    return {"a": a, "b": b}


@pytest.fixture
def clock(monkeypatch):
    """The limiter's clock, moved by hand, so windows are tested without sleeping or racing."""
    now = SimpleNamespace(value=1_900_000_000.0)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: now.value))
    return now


def get(token: str, **params):
    return Client().get(CHECK, {"scope": "research", **params}, HTTP_AUTHORIZATION=f"Bearer {token}")


def ask(token: str, record, **extra):
    return get(token, issuer=record.issuer, mrn=record.mrn, **extra)


# --- Rate limit per token ------------------------------------------------------------------------


def test_over_the_per_minute_limit_is_429_json_with_retry_after(patient, tokens, settings, clock):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST = 3, 100
    record = patient.patient
    for _ in range(3):
        assert ask(tokens["a"], record).status_code == 200
        clock.value += 5
    refused = ask(tokens["a"], record)
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    # The first of the three left the window 60 s after it came, 15 s ago.
    assert refused["Retry-After"] == "45"
    assert refused.json() == {"error": "rate_limited", "message": refused.json()["message"], "retry_after": 45}
    # Refused requests are not answered, so nothing is written to the patient's log for them.
    assert AccessEvent.objects.filter(patient=record).count() == 3
    clock.value += 45
    assert ask(tokens["a"], record).status_code == 200


def test_the_burst_limit_refuses_within_the_second(patient, tokens, settings, clock):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST = 100, 2
    record = patient.patient
    assert [ask(tokens["a"], record).status_code for _ in range(3)] == [200, 200, 429]
    assert ask(tokens["a"], record)["Retry-After"] == "1"
    clock.value += 1
    assert ask(tokens["a"], record).status_code == 200


def test_one_tokens_flood_does_not_limit_another(patient, tokens, settings, clock):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST = 2, 100
    record = patient.patient
    assert [ask(tokens["a"], record).status_code for _ in range(4)] == [200, 200, 429, 429]
    assert ask(tokens["b"], record).status_code == 200
    days = {d.service_account.name: d for d in ServiceRequestDay.objects.select_related("service_account")}
    assert (days["broker-a"].requests, days["broker-a"].rate_limited) == (4, 2)
    assert (days["broker-b"].requests, days["broker-b"].rate_limited) == (1, 0)


def test_every_api_endpoint_is_limited(patient, tokens, settings, clock):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST = 1, 100
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['a']}"}
    assert ask(tokens["a"], patient.patient).status_code == 200
    assert client.post("/api/v1/consent/cohort", {"scope": "research", "study_uids": []}, content_type="application/json", **auth).status_code == 429
    assert client.get("/api/v1/fhir/Consent", {"patient": "X|Y"}, **auth).status_code == 429
    assert client.post("/api/v1/audit/events", {"events": []}, content_type="application/json", **auth).status_code == 429


def test_parallel_requests_never_get_past_the_limit(tokens, settings):
    """40 threads at once against a limit of 10, in the real Redis: the count is taken under
    allauth's cache lock, so exactly 10 pass (a lost update would let more through)."""
    from concurrent.futures import ThreadPoolExecutor

    settings.API_RATE_LIMIT, settings.API_RATE_BURST = 10, 1000
    account = ServiceAccount.objects.get(name="broker-a")
    with ThreadPoolExecutor(max_workers=40) as pool:
        verdicts = list(pool.map(lambda _: ratelimit.request_take(account.pk), range(40)))
    assert sum(v.allowed for v in verdicts) == 10
    assert all(v.retry_after >= 1 for v in verdicts if not v.allowed)


# --- Lookups that find nothing -------------------------------------------------------------------


def test_lookups_that_find_nothing_have_a_tighter_limit_that_then_refuses_every_lookup(patient, tokens, settings, clock):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST, settings.API_PROBE_LIMIT = 100, 100, 2
    record = patient.patient
    assert get(tokens["a"], issuer="X", mrn="guess-1").status_code == 404
    assert ask(tokens["a"], record).status_code == 200  # a hit costs no lookup
    assert get(tokens["a"], issuer="X", mrn="guess-2").status_code == 404
    # Out of lookups: a real patient is refused like a guess, so the 429 tells nothing either.
    guess, real = get(tokens["a"], issuer="X", mrn="guess-3"), ask(tokens["a"], record)
    assert guess.status_code == real.status_code == 429
    assert guess.json() == real.json() and guess["Retry-After"] == real["Retry-After"] == "3600"
    assert ask(tokens["b"], record).status_code == 200
    assert ServiceRequestMiss.objects.filter(service_account__name="broker-a").count() == 2
    clock.value += 3600
    assert ask(tokens["a"], record).status_code == 200


def test_a_batch_of_events_about_unknown_patients_counts_each_patient_once(patient, tokens, settings, clock):
    settings.API_PROBE_LIMIT = 2
    events = [
        {"source_event_id": f"e{i}", "occurred_at": "2026-01-01T10:00:00Z", "patient": {"issuer": "X", "mrn": mrn},
         "purpose": "treatment", "action": "view"}
        for i, mrn in enumerate(["ghost-1", "ghost-1", "ghost-1"])
    ]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['a']}"}
    body = Client().post("/api/v1/audit/events", {"events": events}, content_type="application/json", **auth).json()
    assert [r["reason"] for r in body["results"]] == [UNKNOWN] * 3
    miss = ServiceRequestMiss.objects.get()
    assert (miss.endpoint, miss.unknown, miss.subject_hash) == ("audit-events", 3, subject_hash("X", "ghost-1"))
    assert ask(tokens["a"], patient.patient).status_code == 200  # one lookup of two used


# --- One answer for everything that is not there ----------------------------------------------


def _whole(response) -> tuple:
    return response.status_code, response["Content-Type"], response.content


def test_unknown_patient_unknown_study_and_another_patients_study_answer_the_same(patient, other_patient, tokens):
    record = patient.patient
    mine, theirs = make_study(record), make_study(other_patient.patient)
    answers = [
        get(tokens["a"], issuer=record.issuer, mrn="nobody"),  # unknown patient
        get(tokens["a"], issuer="NO-SUCH-ISSUER", mrn=record.mrn),  # unknown patient (issuer)
        ask(tokens["a"], record, study_uid="9.9.9.9"),  # known patient, unknown study
        ask(tokens["a"], record, study_uid=theirs.study_uid),  # known patient, another patient's study
        get(tokens["a"], issuer=record.issuer, mrn="nobody", study_uid=mine.study_uid),  # a real study, wrong patient
    ]
    assert len({_whole(a) for a in answers}) == 1
    assert answers[0].status_code == 404 and answers[0].json()["error"] == "not_found"
    fhir = Client().get("/api/v1/fhir/Consent", {"patient": f"{record.issuer}|nobody"}, HTTP_AUTHORIZATION=f"Bearer {tokens['a']}")
    assert fhir.status_code == 404 and fhir.content == answers[0].content
    # Nothing was read, so nothing is on anyone's access log; every miss is on the office's.
    assert not AccessEvent.objects.exists()
    misses = list(ServiceRequestMiss.objects.order_by("pk").values_list("endpoint", "subject_hash"))
    assert misses == [
        ("consent-check", subject_hash(record.issuer, "nobody")),
        ("consent-check", subject_hash("NO-SUCH-ISSUER", record.mrn)),
        ("consent-check", subject_hash(record.issuer, record.mrn)),
        ("consent-check", subject_hash(record.issuer, record.mrn)),
        ("consent-check", subject_hash(record.issuer, "nobody")),
        ("fhir-consent", subject_hash(record.issuer, "nobody")),
    ]
    # The table holds no MRN.
    assert not ServiceRequestMiss.objects.filter(subject_hash__contains=record.mrn).exists()


def test_a_patient_outside_the_tokens_reach_answers_like_an_unknown_one(patient, other_patient, tokens):
    """Tokens reach every patient today (``Actor.for_service``); the API resolves patients only
    through ``for_actor``, so a token narrowed to some patients gets the same 404 for the rest."""
    from consent.api import _patient

    record = patient.patient
    account = ServiceAccount.objects.get(name="broker-a")
    request = RequestFactory().get(CHECK)
    request.actor = replace(Actor.for_service(account), all_patients=False, patient_ids=frozenset({other_patient.patient.pk}))
    with pytest.raises(ApiError) as out_of_reach:
        _patient(request, "consent-check", record.issuer, record.mrn)
    unknown = get(tokens["a"], issuer=record.issuer, mrn="nobody")
    error = out_of_reach.value
    assert error.status == unknown.status_code
    assert {"error": error.code, "message": error.message, **error.extra} == unknown.json()


def test_cohort_notes_unknown_studies_without_counting_them_as_probes(patient, tokens, settings):
    settings.API_PROBE_LIMIT = 1
    study = make_study(patient.patient)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['a']}"}
    body = {"scope": "research", "study_uids": [study.study_uid, "9.1", "9.2", "9.1"]}
    response = Client().post("/api/v1/consent/cohort", body, content_type="application/json", **auth)
    assert response.json()["not_permitted"] == [study.study_uid, "9.1", "9.2"]
    miss = ServiceRequestMiss.objects.get()
    assert (miss.endpoint, miss.unknown, miss.subject_hash) == ("consent-cohort", 2, "")
    assert ask(tokens["a"], patient.patient).status_code == 200


# --- JSON 413 on every POST endpoint --------------------------------------------------------------


def _post_paths() -> list[str]:
    # Each API registers its operations when the URLconf imports it; parametrize runs before that.
    get_resolver().url_patterns  # noqa: B018
    return sorted(path for path, item in document()["paths"].items() if "post" in item)


def test_the_post_endpoints_are_the_ones_expected():
    assert _post_paths() == ["/api/v1/audit/events", "/api/v1/consent/cohort"]


def _oversize() -> bytes:
    # Valid JSON one byte over Django's own limit: only its size is wrong.
    head, tail = b'{"events": [], "pad": "', b'"}'
    return head + b"x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1 - len(head) - len(tail)) + tail


def _raw_post(path: str, token: str, body: bytes, **environ):
    return Client().generic("POST", path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **environ)


def _assert_json_413(response) -> None:
    assert response.status_code == 413, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "too_large"


@pytest.mark.parametrize("path", _post_paths())
def test_a_body_over_djangos_limit_is_json_413(tokens, path):
    body = _oversize()
    assert len(body) == django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    _assert_json_413(_raw_post(path, tokens["a"], body))


@pytest.mark.parametrize("path", _post_paths())
def test_a_body_over_the_api_limit_but_under_djangos_is_json_413(tokens, path):
    from core.api import MAX_BODY_BYTES

    _assert_json_413(_raw_post(path, tokens["a"], b" " * (MAX_BODY_BYTES + 1) + b"{}"))


@pytest.mark.parametrize("path", _post_paths())
def test_a_content_length_over_the_limit_is_refused_before_reading(tokens, path):
    # The header says 100 MB; the few bytes behind it are never read.
    _assert_json_413(_raw_post(path, tokens["a"], b"{}", CONTENT_LENGTH=str(100 * 1024 * 1024)))


@pytest.mark.parametrize("path", _post_paths())
def test_a_chunked_body_without_content_length_is_read_up_to_the_limit(tokens, path):
    oversize = _oversize()
    # A server that reads chunked bodies ends the stream itself (wsgi.input_terminated), like a file.
    environ = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    _assert_json_413(_raw_post(path, tokens["a"], oversize, **environ | {"wsgi.input": io.BytesIO(oversize)}))
    small = json.dumps({"scope": "research", "study_uids": [], "events": []}).encode()
    answer = _raw_post(path, tokens["a"], small, **environ | {"wsgi.input": io.BytesIO(small)})
    # Read, not taken for an empty body: the cohort answers, the events API finds the batch empty.
    assert (answer.status_code, answer.json().get("error")) in {(200, None), (400, "empty_batch")}


def test_the_openapi_document_promises_429_and_413():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "Retry-After" in responses["429"]["headers"], (path, method)
            if method == "post":
                assert responses["413"]["content"]["application/json"], path


# --- Settings are parsed strictly -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [("ten", "API_RATE_LIMIT must be an integer"), ("0", "API_RATE_LIMIT must be a positive integer")])
def test_a_mistyped_rate_limit_stops_the_process(value, message):
    env = {**os.environ, "API_RATE_LIMIT": value}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=Path(__file__).resolve().parents[2], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr

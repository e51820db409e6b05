"""The /api/v1/ conventions: bearer tokens, scopes, JSON errors, and the OpenAPI document."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

from accounts.services import service_account_create, service_account_revoke
from core.api import api_endpoint, json_body
from core.models import ServiceAccount


@api_endpoint(scope="audit:write", methods=("POST",))
def _echo(request):
    return JsonResponse({"account": request.service_account.name, "body": json_body(request)})


urlpatterns = [path("api/v1/test/echo", _echo)]


@pytest.fixture
def token(db) -> str:
    _, token = service_account_create(name="mercy-pacs", organization="Mercy Hospital", scopes=["audit:write"])
    return token


def _post(client, token, body=b'{"a": 1}', content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.generic("POST", "/api/v1/test/echo", body, content_type=content_type, **headers)


@override_settings(ROOT_URLCONF=__name__)
def test_a_valid_token_with_the_scope_gets_through(client, token):
    response = _post(client, token)
    assert response.status_code == 200
    assert response.json() == {"account": "mercy-pacs", "body": {"a": 1}}
    assert ServiceAccount.objects.get(name="mercy-pacs").last_used_at is not None


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer lbx_not-a-real-token"])
def test_missing_or_unknown_tokens_are_401(client, token, header):
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post("/api/v1/test/echo", b"{}", content_type="application/json", **kwargs)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthenticated"


@override_settings(ROOT_URLCONF=__name__)
def test_a_revoked_token_is_401_like_an_unknown_one(client, token):
    service_account_revoke(account=ServiceAccount.objects.get(name="mercy-pacs"))
    response = _post(client, token)
    assert response.status_code == 401
    assert response.json()["message"] == "The token is not valid."


@override_settings(ROOT_URLCONF=__name__)
def test_a_token_without_the_scope_is_403(client, db):
    _, other = service_account_create(name="ai", organization="Acme AI", scopes=["consent:read"], actor_type="ai_vendor")
    response = _post(client, other)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


@override_settings(ROOT_URLCONF=__name__)
def test_wrong_method_bad_json_and_wrong_type_are_clear_errors(client, token):
    response = client.get("/api/v1/test/echo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert _post(client, token, body=b"{not json").json()["error"] == "invalid_json"
    assert _post(client, token, content_type="text/plain").status_code == 415


@override_settings(ROOT_URLCONF=__name__)
def test_session_cookies_do_not_stand_in_for_a_token(patient_client):
    assert _post(patient_client, None).status_code == 401


def test_tokens_are_stored_hashed(token):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_serviceaccount")
        rows = cursor.fetchall()
    assert token not in json.dumps(rows, default=str)
    assert token[len("lbx_") + 4 :] not in json.dumps(rows, default=str)


def test_create_service_account_prints_the_token_once(db, capsys):
    call_command("create_service_account", "broker", "--org", "Research Broker", "--scope", "consent:read", "--actor-type", "researcher")
    out = capsys.readouterr().out.strip()
    assert out.startswith("lbx_")
    account = ServiceAccount.objects.get(name="broker")
    assert account.scopes == ["consent:read"] and account.actor_type == "researcher"
    with pytest.raises(Exception, match="already exists"):
        call_command("create_service_account", "broker", "--org", "X", "--scope", "consent:read")


@pytest.mark.django_db
def test_openapi_document_is_public_and_lists_every_api_route(client):
    from tests.portal.test_gate import ROUTES

    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "bearer" in doc["components"]["securitySchemes"]
    api_paths = {p for p, name, _ in ROUTES if p.startswith("/api/v1/") and name != "portal-openapi"}
    documented = {re_path for re_path in doc["paths"]}
    missing = [p for p in api_paths if not any(_matches(template, p) for template in documented)]
    assert not missing, f"API routes missing from the OpenAPI document: {missing}"


def _matches(template: str, path: str) -> bool:
    import re

    return re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) is not None

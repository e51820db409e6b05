"""Security headers and cookies (docs/security.md §15)."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_public_page_sends_strict_csp_and_headers(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_no_inline_script_or_style_on_pages(patient_client):
    """The CSP forbids inline code; the pages must not need any."""
    for path in ("/", "/account/security/", "/accounts/password/change/"):
        html = patient_client.get(path).content.decode()
        assert "<script>" not in html and "<script >" not in html, path
        assert ' style="' not in html, path
        assert " onclick=" not in html and " onload=" not in html, path


@pytest.mark.django_db
def test_session_and_csrf_cookies_are_httponly_and_samesite(client, patient):
    from tests.factories import PASSWORD

    response = client.post("/accounts/login/", {"login": patient.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies["lightbox-session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


@pytest.mark.django_db
def test_state_changes_need_a_csrf_token(patient):
    from django.test import Client

    from tests.conftest import login_verified

    client = login_verified(Client(enforce_csrf_checks=True), patient)
    response = client.post("/account/security/recovery-codes/")
    assert response.status_code == 403
    response = client.post("/accounts/logout/")
    assert response.status_code == 403

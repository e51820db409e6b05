"""The privacy office's page of service-account activity: what each token did with the APIs, and
the lookups that found nothing (docs/security.md §22; issue 17, found 4)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import service_account_create
from core.models import ServiceRequestMiss
from core.service_activity import subject_hash
from tests.conftest import login_password_only, login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/privacy-office/service-accounts/"


def test_a_miss_is_recorded_and_shown_to_the_office(officer_client, patient):
    _, token = service_account_create(name="prober", organization="Curious Ltd", scopes=["consent:read"], actor_type="researcher")
    service_account_create(name="quiet-pacs", organization="Mercy Hospital", scopes=["audit:write"])
    api = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for mrn in ("guess-1", "guess-2", "guess-1"):
        assert api.get("/api/v1/consent/check", {"issuer": "LOCAL", "mrn": mrn, "scope": "research"}, **auth).status_code == 404
    record = patient.patient
    assert api.get("/api/v1/consent/check", {"issuer": record.issuer, "mrn": record.mrn, "scope": "research"}, **auth).status_code == 200

    page = officer_client.get(URL)
    assert page.status_code == 200 and page["Cache-Control"].startswith("max-age=0")
    html = page.content.decode()
    rows = {name: html.split(f">{name} <")[1].split("</tr>")[0] for name in ("prober", "quiet-pacs")}
    # Requests, 429s, lookups that found nothing, different patients.
    assert numbers(rows["prober"])[:4] == ["4", "0", "3", "2"]
    assert numbers(rows["quiet-pacs"])[:4] == ["0", "0", "0", "0"]
    assert "Never" in rows["quiet-pacs"]
    # The misses, newest first, with the patient as a code: never the MRN.
    assert html.count("consent-check") == 3
    assert subject_hash("LOCAL", "guess-1")[:12] in html and subject_hash("LOCAL", "guess-2")[:12] in html
    assert "guess-1" not in html and record.mrn not in html
    assert ServiceRequestMiss.objects.count() == 3


def numbers(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_page_has_a_clear_empty_state(officer_client):
    html = officer_client.get(URL).content.decode()
    assert "No system has a token yet" in html
    assert 'id="no-misses"' in html


def test_the_page_is_accessible_and_linked_from_the_dashboard(officer_client):
    service_account_create(name="pacs", organization="Mercy Hospital", scopes=["audit:write"])
    html = officer_client.get(URL).content.decode()
    assert html.count('<th scope="col">') == 6 and '<th scope="row"' in html and "<caption" in html
    assert 'aria-labelledby="tokens-heading"' in html
    # Narrow screens: each cell names its column (lightbox.css shows data-label under 40rem).
    assert html.count("data-label=") >= 6
    assert URL in officer_client.get("/privacy-office/dashboard/").content.decode()


def test_only_officers_see_it(patient_client, officer):
    assert Client().get(URL)["Location"].startswith("/accounts/login/")
    assert patient_client.get(URL).status_code == 404
    admin = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=admin)
    assert login_verified(Client(), admin).get(URL).status_code == 404
    assert login_password_only(Client(), officer).get(URL)["Location"].startswith("/account/2fa/")
    _, token = service_account_create(name="t", organization="T", scopes=["consent:read"])
    assert Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")["Location"].startswith("/accounts/login/")


def test_wrong_method_is_405(officer_client):
    assert officer_client.post(URL).status_code == 405

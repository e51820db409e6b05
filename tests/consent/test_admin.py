"""The privacy office keeps policies and partner organisations in the Django admin; decisions
are not there (they are patients' data), and a policy is published through the service."""

from __future__ import annotations

import pytest

from consent.models import ConsentDecision, ConsentPolicy
from consent.services import _write_decision
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = UserFactory(is_staff=True, is_superuser=True, role="administrator")
    AuthenticatorAppFactory(user=user)
    return login_verified(client, user)


def test_publishing_a_policy_in_the_admin_hashes_its_text(admin_client, policy):
    response = admin_client.post("/admin/consent/consentpolicy/add/", {
        "version": 2, "title": "Use of your scans", "text": "New text.", "changes": "One change.",
        "effective_from_0": "2026-01-01", "effective_from_1": "00:00:00",
    })
    assert response.status_code == 302, response.content[:2000]
    v2 = ConsentPolicy.objects.get(version=2)
    assert v2.sha256 == ConsentPolicy.hash_text("New text.")
    # A published version cannot be edited, and an older number is refused.
    assert admin_client.post(f"/admin/consent/consentpolicy/{v2.pk}/change/", {"text": "Edited"}).status_code == 403
    response = admin_client.post("/admin/consent/consentpolicy/add/", {
        "version": 1, "title": "x", "text": "x", "effective_from_0": "2026-01-01", "effective_from_1": "00:00:00",
    })
    assert response.status_code == 200 and "A new version must be above 2." in response.content.decode()
    assert ConsentPolicy.objects.count() == 2


def test_decisions_are_not_in_the_admin(admin_client, patient, policy):
    """A decision is one patient's choice about their scans: the consent page and the office's
    audited pages show it, the admin does not (docs/security.md §19)."""
    decision = _write_decision(patient=patient.patient, scope="research", decision="granted", study=None, policy=policy,
                               actor=patient, channel="portal", kind="change", recorded_by="patient")
    assert admin_client.get("/admin/consent/consentdecision/").status_code == 404
    assert admin_client.get(f"/admin/consent/consentdecision/{decision.pk}/change/").status_code == 404
    assert admin_client.get("/admin/consent/consentdecision/add/").status_code == 404
    assert admin_client.post(f"/admin/consent/consentdecision/{decision.pk}/delete/", {"post": "yes"}).status_code == 404
    assert ConsentDecision.objects.count() == 1


def test_partner_organisations_are_managed_in_the_admin(admin_client):
    response = admin_client.post("/admin/consent/recipient/add/", {
        "name": "Acme AI Triage", "kind": "ai_vendor", "scope": "ai_training", "receives": "deidentified",
        "purpose": "Triage.", "retention": "5 years", "website": "", "active": "on",
    })
    assert response.status_code == 302
    assert admin_client.get("/admin/consent/recipient/").status_code == 200

"""The access log is not in the Django admin (docs/security.md §19): each event is a line of one
patient's history, shown only to the patient and, through a flag, to the officer holding it, each
look logged. No admin URL reads, adds, changes or deletes an event."""

from __future__ import annotations

import pytest
from django.contrib import admin

from accounts.models import User
from audit.models import AccessEvent
from audit.services import chain_verify
from tests.audit.conftest import clinician_view
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory


@pytest.fixture
def admin_client(client, db):
    user = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=user)
    return login_verified(client, user)


@pytest.fixture
def event(record):
    return clinician_view(record, organization="Original Org")


def test_access_events_are_not_registered(db):
    assert AccessEvent not in admin.site._registry


def test_no_admin_url_reads_or_writes_an_event(admin_client, event):
    base = "/admin/audit/accessevent/"
    for url in (base, f"{base}{event.pk}/change/", f"{base}{event.pk}/delete/", f"{base}add/", f"{base}?q={event.patient.mrn}"):
        response = admin_client.get(url)
        assert response.status_code == 404, url
        assert b"Original Org" not in response.content
    assert admin_client.post(f"{base}{event.pk}/delete/", {"post": "yes"}).status_code == 404
    assert admin_client.post(base, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}).status_code == 404
    assert AccessEvent.objects.filter(pk=event.pk, organization="Original Org").exists()
    assert chain_verify().ok


def test_the_audit_app_lists_only_its_checkpoints(admin_client, event):
    page = admin_client.get("/admin/audit/")
    assert page.status_code == 200
    assert b"/admin/audit/auditcheckpoint/" in page.content and b"accessevent" not in page.content

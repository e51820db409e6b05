"""The Django admin shows the access log but cannot add, change or delete events."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import User
from audit.admin import AccessEventAdmin
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


def test_model_admin_grants_no_write_permission(admin_client, event):
    model_admin = admin.site._registry[AccessEvent]
    request = RequestFactory().get("/")
    request.user = User.objects.get(is_superuser=True)

    assert isinstance(model_admin, AccessEventAdmin)
    assert model_admin.has_view_permission(request, event)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)


def test_list_and_detail_are_readable_without_a_save_button(admin_client, event):
    listing = admin_client.get(reverse("admin:audit_accessevent_changelist"))
    detail = admin_client.get(reverse("admin:audit_accessevent_change", args=[event.pk]))

    assert listing.status_code == 200
    assert b"Original Org" in listing.content
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content


def test_change_post_is_refused(admin_client, event):
    response = admin_client.post(
        reverse("admin:audit_accessevent_change", args=[event.pk]), {"organization": "Forged Org"}
    )

    assert response.status_code == 403
    assert AccessEvent.objects.get(pk=event.pk).organization == "Original Org"


def test_delete_is_refused(admin_client, event):
    url = reverse("admin:audit_accessevent_delete", args=[event.pk])

    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert AccessEvent.objects.filter(pk=event.pk).exists()


def test_bulk_delete_action_is_not_offered(admin_client, event):
    url = reverse("admin:audit_accessevent_changelist")

    assert b"delete_selected" not in admin_client.get(url).content
    admin_client.post(url, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AccessEvent.objects.filter(pk=event.pk).exists()
    assert chain_verify().ok


def test_add_is_refused(admin_client, db):
    assert admin_client.get(reverse("admin:audit_accessevent_add")).status_code == 403

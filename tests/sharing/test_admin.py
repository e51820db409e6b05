"""Partners in the admin: the password is encrypted at rest (core.crypto) and never shown back."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from core.crypto import decrypt
from sharing.models import Partner
from tests.conftest import login_verified, reauthenticate
from tests.factories import AuthenticatorAppFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "stow-pass-Quillwort-8841"


@pytest.fixture
def admin_client(client: Client) -> Client:
    admin = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=admin)
    login_verified(client, admin)
    reauthenticate(client)
    return client


def _form(**extra) -> dict:
    return {"name": "Eastgate Hospital", "stow_url": "https://pacs.eastgate.example/dicom-web", "username": "lightbox",
            "active": "on", **extra}


def test_the_password_is_stored_encrypted_and_never_shown_back(admin_client: Client):
    response = admin_client.post("/admin/sharing/partner/add/", _form(password=SECRET))
    assert response.status_code == 302, response.content[:500]
    partner = Partner.objects.get()
    assert SECRET not in partner.password_encrypted
    assert decrypt(partner.password_encrypted).decode() == SECRET
    for url in ("/admin/sharing/partner/", f"/admin/sharing/partner/{partner.pk}/change/"):
        page = admin_client.get(url).content.decode()
        assert SECRET not in page and partner.password_encrypted not in page

    # Saving without typing it keeps it; "remove" clears it.
    admin_client.post(f"/admin/sharing/partner/{partner.pk}/change/", _form(username="lb2"))
    partner.refresh_from_db()
    assert partner.username == "lb2" and decrypt(partner.password_encrypted).decode() == SECRET
    admin_client.post(f"/admin/sharing/partner/{partner.pk}/change/", _form(clear_password="on"))
    partner.refresh_from_db()
    assert partner.password_encrypted == ""


def test_a_partner_that_received_pushes_cannot_be_deleted(admin_client: Client, patient):
    partner = Partner.objects.create(name="Eastgate Hospital", stow_url="https://pacs.eastgate.example/dicom-web")
    from sharing.models import Push

    Push.objects.create(patient=patient.patient, partner=partner, total=1)
    assert admin_client.get(f"/admin/sharing/partner/{partner.pk}/delete/").status_code == 403
    assert Partner.objects.filter(pk=partner.pk).exists()

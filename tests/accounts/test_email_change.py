"""The email page asks for the password again before any change (docs/security.md §6).

Lightbox relies on allauth's ``ACCOUNT_REAUTHENTICATION_REQUIRED`` here rather than its own
check, so these tests are what notices if that setting or allauth's behaviour changes.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from allauth.account.models import EmailAddress

from tests.conftest import reauthenticate

EMAIL_URL = "/accounts/email/"
REAUTH_URL = "/accounts/reauthenticate/"
NEW = "second.address@example.org"


def _age_reauthentication(client, seconds: int) -> None:
    session = client.session
    for method in session.get("account_authentication_methods", []):
        method["at"] -= seconds
    session.save()


@pytest.mark.django_db
def test_adding_an_email_without_a_fresh_password_goes_to_the_password_page(patient_client, patient):
    response = patient_client.post(EMAIL_URL, {"action_add": "", "email": NEW})

    assert response.status_code == 302 and urlparse(response["Location"]).path == REAUTH_URL
    assert not EmailAddress.objects.filter(user=patient, email=NEW).exists()


@pytest.mark.django_db
def test_adding_an_email_after_the_password_works_until_five_minutes_pass(patient_client, patient):
    reauthenticate(patient_client)
    response = patient_client.post(EMAIL_URL, {"action_add": "", "email": NEW})
    assert response.status_code == 302 and urlparse(response["Location"]).path == EMAIL_URL
    assert EmailAddress.objects.filter(user=patient, email=NEW).exists()

    _age_reauthentication(patient_client, 301)  # ACCOUNT_REAUTHENTICATION_TIMEOUT is 300 s
    response = patient_client.post(EMAIL_URL, {"action_remove": "", "email": NEW})
    assert response.status_code == 302 and urlparse(response["Location"]).path == REAUTH_URL
    assert EmailAddress.objects.filter(user=patient, email=NEW).exists()


@pytest.mark.django_db
def test_making_another_email_primary_needs_a_fresh_password(patient_client, patient):
    EmailAddress.objects.create(user=patient, email=NEW, verified=True, primary=False)

    response = patient_client.post(EMAIL_URL, {"action_primary": "", "email": NEW})

    assert response.status_code == 302 and urlparse(response["Location"]).path == REAUTH_URL
    assert not EmailAddress.objects.get(user=patient, email=NEW).primary

"""The password re-check names what it confirms (issue 19, item 4): every caller passes its
action (core.reauth.ACTIONS); the page says it, and only for the return it was asked for."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from core import reauth

pytestmark = pytest.mark.django_db


def _password_page(client, response) -> str:
    assert response.status_code == 302, response.status_code
    location = response["Location"]
    assert urlsplit(location).path == reverse("account_reauthenticate"), location
    return html.unescape(client.get(location).content.decode())


@pytest.mark.parametrize(
    ("method", "url", "action"),
    [
        ("get", "/consent/change/research/", "change your choices about your scans"),
        ("get", "/exports/new/?x=1", None),  # allow_get: the form is shown; its POST asks
        ("post", "/exports/new/", "make a copy of your scans to download"),
        ("get", "/access-log/download.csv", "download your access log"),
        ("get", "/accounts/email/", "change your email address"),
    ],
)
def test_the_password_page_names_the_action(patient_client, method, url, action):
    if action is None:
        assert patient_client.get(url).status_code == 200
        return
    response = getattr(patient_client, method)(url)
    if url == "/accounts/email/" and response.status_code == 200:
        response = patient_client.post(url, {"action_add": "", "email": "new@example.org"})
    page = _password_page(patient_client, response)
    assert f"Before you {action}, enter your password again." in page
    if "choices" not in action:
        assert "your choices about your scans" not in page  # the one sentence every page had


def test_the_officers_paper_consent_is_named(officer):
    from django.test import Client

    from tests.conftest import login_verified

    client = login_verified(Client(), officer)
    page = _password_page(client, client.get(reverse("consent-office-record")))
    assert "Before you record a patient's paper consent form, enter your password again." in page


def test_a_stale_action_is_not_shown_for_another_return(patient_client):
    patient_client.get("/consent/change/research/")  # remembered for that return only
    page = patient_client.get(reverse("account_reauthenticate") + "?next=/somewhere/").content.decode()
    assert "Before you continue, enter your password again." in page


def test_every_caller_names_a_known_action():
    with pytest.raises(ValueError):
        reauth.reauthentication_required("make_coffee")

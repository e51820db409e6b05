"""Every link in every email the portal sends points at SITE_URL (issue 19, item 1).

Each email is produced the way the portal produces it (allauth's flows, the flags, exports and
access-notification services), on a request whose host is not SITE_URL's, and every URL in its
text and HTML parts must start with SITE_URL.
"""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client, RequestFactory

from audit.notifications import notify_events
from exports.models import ExportRequest
from exports.services import _notify_ready
from flags import services as flag_services
from tests.audit.conftest import clinician_view
from tests.factories import actor_of
from tests.flags.conftest import make_study

pytestmark = pytest.mark.django_db

SITE = "https://portal.hospital.example"
URL = re.compile(r"https?://[^\s\"'<>)]+")


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE
    settings.ALLOWED_HOSTS = ["*"]


def _links(message) -> list[str]:
    texts = [message.body] + [content for content, _mime in getattr(message, "alternatives", [])]
    return [url for text in texts for url in URL.findall(text)]


def _assert_links_on_site(messages) -> None:
    assert messages, "no email was sent"
    for message in messages:
        links = _links(message)
        assert links, f"{message.subject!r} has no link"
        for link in links:
            assert link.startswith(SITE + "/"), f"{message.subject!r} links to {link}"


def test_password_reset_links(patient):
    Client(HTTP_HOST="internal-name:8000").post("/accounts/password/reset/", {"email": patient.email})
    _assert_links_on_site(mail.outbox)


def test_password_reset_for_an_unknown_address_links_to_signup(db):
    Client(HTTP_HOST="internal-name:8000").post("/accounts/password/reset/", {"email": "nobody@example.org"})
    _assert_links_on_site(mail.outbox)


def test_email_confirmation_link(patient):
    request = RequestFactory(HTTP_HOST="internal-name:8000").get("/")
    request.user = patient
    request.session = {}
    address = EmailAddress.objects.create(user=patient, email="second@example.org", verified=False)
    address.send_confirmation(request)
    _assert_links_on_site(mail.outbox)


def test_flag_notice_email(patient, django_capture_on_commit_callbacks):
    study = make_study(patient.patient)
    with django_capture_on_commit_callbacks(execute=True):
        flag_services.flag_create(actor=actor_of(patient), category="not_my_scan", description="", study_id=study.pk)
    _assert_links_on_site(mail.outbox)


def test_export_ready_email(patient):
    export = ExportRequest.objects.create(patient=patient.patient, requested_by=patient, status="ready")
    _notify_ready(export)
    _assert_links_on_site(mail.outbox)


def test_access_notification_email(patient):
    event = clinician_view(patient.patient, organization="Oncology Partners")
    assert notify_events([event.pk]) == 1
    _assert_links_on_site(mail.outbox)

"""The sharing pages: access control (anonymous, password-only, another patient, wrong method),
the password asked again before sending (in the view and in the service), form refusals, the
list with its progress and failure reason, and its empty state."""

from __future__ import annotations

import re

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.core.exceptions import ValidationError
from django.test import Client

from sharing import services
from sharing.models import Partner, Push
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.exports.conftest import make_study
from tests.factories import actor_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner_row(db) -> Partner:
    # No archive behind it: these tests never run the job (its callbacks are not executed).
    return Partner.objects.create(name="Westmere Clinic", stow_url="http://127.0.0.1:9/dicom-web")


def _push(user, tmp_path, partner, capture, **fields) -> Push:
    study = make_study(user, tmp_path / f"s{user.pk}", slices=2)
    with capture(execute=False):
        push = services.push_request(actor=actor_of(user), study_ids=[study.pk], partner_id=partner.pk)
    Push.objects.filter(pk=push.pk).update(**fields)
    push.refresh_from_db()
    return push


@pytest.fixture
def own_push(patient, tmp_path, partner_row, django_capture_on_commit_callbacks) -> Push:
    return _push(patient, tmp_path, partner_row, django_capture_on_commit_callbacks)


@pytest.fixture
def other_push(other_patient, tmp_path, partner_row, django_capture_on_commit_callbacks) -> Push:
    return _push(other_patient, tmp_path, partner_row, django_capture_on_commit_callbacks)


def _unnonced(body: bytes) -> bytes:
    """The page without what differs per response: CSP nonces and CSRF tokens."""
    body = re.sub(rb'nonce="[^"]+"', b'nonce="-"', body)
    return re.sub(rb'(name="csrfmiddlewaretoken" value=")[^"]+', rb"\1-", body)


def pages(push: Push) -> dict[str, tuple[str, str]]:
    return {"list": ("get", "/sharing/"), "send": ("get", "/sharing/send/"), "send-post": ("post", "/sharing/send/"),
            "status": ("get", f"/sharing/pushes/{push.pk}/status/")}


@pytest.mark.parametrize("page", ["list", "send", "send-post", "status"])
def test_anonymous_is_sent_to_login(client: Client, own_push, page):
    method, url = pages(own_push)[page]
    response = getattr(client, method)(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("page", ["list", "send", "send-post", "status"])
def test_password_only_session_is_sent_to_the_second_factor(client: Client, own_push, patient, page):
    login_password_only(client, patient)
    method, url = pages(own_push)[page]
    response = getattr(client, method)(url, {"studies": ["1"], "partner": "1"} if method == "post" else None)
    assert response.status_code == 302 and response["Location"].startswith("/account/2fa/")
    assert Push.objects.count() == 1


def test_another_patients_push_is_a_404_like_a_missing_one(patient_client: Client, own_push, other_push):
    # The same request id on both: error pages show it.
    theirs = patient_client.get(f"/sharing/pushes/{other_push.pk}/status/", HTTP_X_REQUEST_ID="sharing404")
    missing = patient_client.get("/sharing/pushes/987654321/status/", HTTP_X_REQUEST_ID="sharing404")
    assert theirs.status_code == missing.status_code == 404
    assert _unnonced(theirs.content) == _unnonced(missing.content)
    mine = patient_client.get(f"/sharing/pushes/{own_push.pk}/status/")
    assert mine.json() == {"id": own_push.pk, "status": "queued", "label": "Waiting to start", "sent": 0, "total": 2,
                           "percent": 0, "active": True, "error": ""}


def test_the_list_shows_only_the_patients_own_pushes(patient_client: Client, own_push, other_push, other_patient):
    page = patient_client.get("/sharing/").content.decode()
    assert f'id="push-{own_push.pk}"' in page and f'id="push-{other_push.pk}"' not in page


@pytest.mark.parametrize(("method", "url"), [("post", "/sharing/"), ("put", "/sharing/send/"), ("delete", "/sharing/send/"),
                                             ("post", "/sharing/pushes/{pk}/status/")])
def test_wrong_method_is_405(patient_client: Client, own_push, method, url):
    response = getattr(patient_client, method)(url.format(pk=own_push.pk))
    assert response.status_code == 405
    assert Push.objects.count() == 1


def test_sending_asks_for_the_password_again_then_starts_the_push(
        patient_client: Client, patient, partner_row, tmp_path, django_capture_on_commit_callbacks):
    study = make_study(patient, tmp_path / "s", slices=2)
    page = patient_client.get(f"/sharing/send/?study={study.pk}")
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert f'value="{study.pk}"' in page.content.decode() and "checked" in page.content.decode()  # from the study
    response = patient_client.post("/sharing/send/", {"studies": [str(study.pk)], "partner": str(partner_row.pk)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert not Push.objects.exists()
    reauthenticate(patient_client)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = patient_client.post("/sharing/send/", {"studies": [str(study.pk)], "partner": str(partner_row.pk)})
    assert response.status_code == 302 and response["Location"] == "/sharing/"
    push = Push.objects.get()
    assert (push.patient, push.partner, push.status, push.total, push.requested_by) == (
        patient.patient, partner_row, "queued", 2, patient)
    assert list(push.studies.all()) == [study] and len(callbacks) == 1


def test_the_service_checks_the_password_itself(patient, partner_row, tmp_path):
    study = make_study(patient, tmp_path / "s", slices=1)
    with pytest.raises(ReauthenticationRequired):
        services.push_request(actor=actor_of(patient, reauthenticated=False), study_ids=[study.pk], partner_id=partner_row.pk)
    assert not Push.objects.exists()


def test_another_patients_study_is_not_a_choice(client: Client, patient, other_patient, partner_row, tmp_path):
    theirs = make_study(other_patient, tmp_path / "o", slices=1)
    make_study(patient, tmp_path / "m", slices=1)
    login_verified(client, patient)
    reauthenticate(client)
    response = client.post("/sharing/send/", {"studies": [str(theirs.pk)], "partner": str(partner_row.pk)})
    assert response.status_code == 400 and not Push.objects.exists()
    with pytest.raises(ValidationError):
        services.push_request(actor=actor_of(patient), study_ids=[theirs.pk], partner_id=partner_row.pk)


def test_an_inactive_partner_is_not_offered_nor_accepted(patient_client: Client, patient, partner_row, tmp_path):
    study = make_study(patient, tmp_path / "s", slices=1)
    partner_row.active = False
    partner_row.save()
    reauthenticate(patient_client)
    assert "Westmere Clinic" not in patient_client.get("/sharing/send/").content.decode()
    response = patient_client.post("/sharing/send/", {"studies": [str(study.pk)], "partner": str(partner_row.pk)})
    assert response.status_code == 400 and not Push.objects.exists()
    with pytest.raises(ValidationError):
        services.push_request(actor=actor_of(patient), study_ids=[study.pk], partner_id=partner_row.pk)


def test_staff_have_nothing_to_send(client: Client, officer):
    login_verified(client, officer)
    reauthenticate(client)
    assert client.get("/sharing/send/").status_code == 404
    assert "You have not sent any scans" in client.get("/sharing/").content.decode()


def test_the_list_shows_progress_and_a_failure_reason(patient_client: Client, patient, partner_row, tmp_path,
                                                      django_capture_on_commit_callbacks):
    sending = _push(patient, tmp_path / "a", partner_row, django_capture_on_commit_callbacks, status="sending", sent=1)
    _push(patient, tmp_path / "b", partner_row, django_capture_on_commit_callbacks, status="failed",
          error="Westmere Clinic could not be reached.")
    page = patient_client.get("/sharing/").content.decode()
    assert '<progress class="push-bar" max="2" value="1"' in page and "1 of 2 images" in page
    assert f'data-push-status-url="/sharing/pushes/{sending.pk}/status/"' in page
    assert "Could not be sent" in page and "Westmere Clinic could not be reached." in page


def test_the_empty_state(patient_client: Client):
    page = patient_client.get("/sharing/").content.decode()
    assert "You have not sent any scans to another hospital." in page
    assert 'href="/sharing/send/"' in page


def test_the_patient_stops_their_own_push_from_the_sharing_page(client: Client, patient, own_push, other_push):
    # Only the privacy office could stop a push (list_shares --revoke); the patient who sent
    # their scans to the wrong hospital had no way to.
    from django.core import mail

    login_verified(client, patient)
    page = client.get("/sharing/").content.decode()
    assert f'action="/sharing/pushes/{own_push.pk}/stop/"' in page and "Stop sending" in page
    assert client.get(f"/sharing/pushes/{own_push.pk}/stop/").status_code == 405
    assert client.post(f"/sharing/pushes/{other_push.pk}/stop/").status_code == 404  # another patient's

    response = client.post(f"/sharing/pushes/{own_push.pk}/stop/", follow=True)

    own_push.refresh_from_db()
    assert own_push.status == "failed" and own_push.error == "Stopped at your request."
    assert "Sending stopped" in response.content.decode()
    assert f'action="/sharing/pushes/{own_push.pk}/stop/"' not in response.content.decode()
    assert mail.outbox == []  # nobody is emailed about what they just did
    assert Push.objects.get(pk=other_push.pk).status == "queued"
    again = client.post(f"/sharing/pushes/{own_push.pk}/stop/", follow=True)
    assert "cannot be taken back" in again.content.decode()

"""A push to a real second Orthanc (the partner hospital), run in this process by the Celery task
(``apply``: the task's own retries, without the broker): the partner holds byte-for-byte the files
the patient has, fetched back by SOP Instance UID; the share is in the patient's log once, naming
the partner; a partner that is down is retried with backoff, then the push fails with a plain
reason and the patient is emailed (likewise one answering 503, and an unexpected error); a
partner that refuses fails the push at once; the instances sent are those the patient asked for."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from audit.models import AccessEvent
from imaging.models import Instance
from imaging.storage import open_stored
from sharing import services, tasks
from sharing.models import Partner, Push, PushedInstance
from tests.exports.conftest import make_study
from tests.factories import actor_of
from tests.sharing.conftest import PARTNER_NAME

pytestmark = pytest.mark.django_db


def _request(user, studies, partner, django_capture_on_commit_callbacks) -> Push:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        push = services.push_request(actor=actor_of(user), study_ids=[s.pk for s in studies], partner_id=partner.pk)
    assert len(callbacks) == 1  # the task is sent after commit, with the id only
    return push


def _shares(user) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(patient=user.patient, action="share"))


def test_the_partner_holds_exactly_the_patients_files_and_the_share_is_logged_once(
        patient, partner, partner_archive, tmp_path, django_capture_on_commit_callbacks):
    ct = make_study(patient, tmp_path / "ct", slices=3)
    other = make_study(patient, tmp_path / "ct2", slices=2)
    push = _request(patient, [ct, other], partner, django_capture_on_commit_callbacks)
    assert (push.status, push.total, push.sent) == ("queued", 5, 0)

    tasks.push_send.apply(args=[push.pk])

    push.refresh_from_db()
    assert (push.status, push.sent, push.attempts, push.error) == ("sent", 5, 1, "")
    instances = list(Instance.objects.filter(series__study__in=[ct, other]))
    assert len(instances) == 5
    for instance in instances:
        orthanc_id = partner_archive.find_instance(instance.sop_uid)
        assert orthanc_id, f"{instance.sop_uid} is not at the partner"
        with open_stored(instance.storage_path) as fh:
            assert partner_archive.file(orthanc_id) == fh.read()
    [share] = _shares(patient)
    assert (share.organization, share.actor_name, share.actor_type, share.purpose, share.outcome) == (
        PARTNER_NAME, "Lightbox", "system", "patient_request", "success")
    assert share.details == {"push": push.pk, "studies": 2, "instances": 5}

    # A redelivery of the finished job sends nothing and records nothing.
    tasks.push_send.apply(args=[push.pk])
    assert len(_shares(patient)) == 1 and PushedInstance.objects.filter(push=push).count() == 5


def test_the_patient_sees_the_share_in_their_access_log(
        client, patient, partner, tmp_path, django_capture_on_commit_callbacks):
    from tests.conftest import login_verified

    study = make_study(patient, tmp_path / "s", slices=1)
    push = _request(patient, [study], partner, django_capture_on_commit_callbacks)
    tasks.push_send.apply(args=[push.pk])
    login_verified(client, patient)
    page = client.get("/access-log/").content.decode()
    assert f"Lightbox, sending to the imaging archive at {PARTNER_NAME} shared your " in page


def test_a_partner_that_is_down_is_retried_then_the_push_fails_and_the_patient_is_told(
        patient, partner_down, tmp_path, settings, django_capture_on_commit_callbacks):
    settings.SHARING_PUSH_RETRIES = 3
    study = make_study(patient, tmp_path / "s", slices=2)
    push = _request(patient, [study], partner_down, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.push_send.apply(args=[push.pk])

    push.refresh_from_db()
    assert push.status == "failed"
    assert push.attempts == 4  # the first try and three retries
    assert push.sent == 0 and not _shares(patient)
    assert "Downriver General could not be reached" in push.error and "tried 4 times" in push.error
    [email] = mail.outbox
    assert email.to == [patient.email]
    assert "Downriver General" in email.body and "could not be reached" in email.body
    assert patient.patient.name not in email.body + email.subject


def test_retries_back_off_doubling_up_to_a_bound(settings):
    settings.SHARING_RETRY_BACKOFF, settings.SHARING_RETRY_BACKOFF_MAX = 30, 900
    assert [tasks.retry_delay(n) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]


def test_a_retry_waits_for_its_backoff_before_the_reconciler_sends_it_again(
        patient, partner_down, tmp_path, settings, django_capture_on_commit_callbacks):
    study = make_study(patient, tmp_path / "s", slices=1)
    push = _request(patient, [study], partner_down, django_capture_on_commit_callbacks)
    with pytest.raises(services.PartnerUnavailable) as caught:
        services.push_send(push_id=push.pk)
    services.push_retry_later(push_id=push.pk, claimed_at=caught.value.claimed_at, reason=caught.value.reason, delay=600)
    push.refresh_from_db()
    assert push.status == "queued" and "will try again" in push.error
    with django_capture_on_commit_callbacks(execute=False):
        assert services.pushes_reconcile() == 0


def test_a_partner_that_refuses_fails_the_push_at_once(
        patient, partner, partner_archive, tmp_path, django_capture_on_commit_callbacks):
    partner.stow_url = f"{partner_archive.url}/no-such-root"  # Orthanc answers 404
    partner.save()
    study = make_study(patient, tmp_path / "s", slices=1)
    push = _request(patient, [study], partner, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.push_send.apply(args=[push.pk])
    push.refresh_from_db()
    assert (push.status, push.attempts) == ("failed", 1)
    assert push.error == f"{PARTNER_NAME} answered HTTP 404."
    assert len(mail.outbox) == 1 and not _shares(patient)


def test_a_file_that_fails_its_integrity_check_is_not_sent(
        patient, partner, partner_archive, tmp_path, django_capture_on_commit_callbacks):
    study = make_study(patient, tmp_path / "s", slices=1)
    Instance.objects.filter(series__study=study).update(sha256="0" * 64)
    push = _request(patient, [study], partner, django_capture_on_commit_callbacks)
    tasks.push_send.apply(args=[push.pk])
    push.refresh_from_db()
    assert push.status == "failed" and "integrity check" in push.error
    assert partner_archive.find_instance(Instance.objects.get(series__study=study).sop_uid) is None


def test_an_image_added_to_the_study_after_the_request_is_not_sent_unasked(
        patient, partner, partner_archive, tmp_path, django_capture_on_commit_callbacks):
    study = make_study(patient, tmp_path / "s", slices=2)
    push = _request(patient, [study], partner, django_capture_on_commit_callbacks)
    # A PACS sync files a new image under the study before the worker starts.
    later = make_study(patient, tmp_path / "later", slices=1)
    added = Instance.objects.get(series__study=later)
    Instance.objects.filter(pk=added.pk).update(series=study.series.first())

    tasks.push_send.apply(args=[push.pk])

    push.refresh_from_db()
    assert (push.status, push.sent, push.total) == ("sent", 2, 2)
    assert partner_archive.find_instance(added.sop_uid) is None


class _Answers503(BaseHTTPRequestHandler):
    """A partner's archive that is up but overloaded: every request is a 503."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def partner_overloaded(db):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Partner.objects.create(name="Overloaded Clinic", stow_url=f"http://127.0.0.1:{server.server_port}/dicom-web")
    finally:
        server.shutdown()
        server.server_close()


def test_a_partner_answering_5xx_is_retried_then_the_push_fails(
        patient, partner_overloaded, tmp_path, settings, django_capture_on_commit_callbacks):
    settings.SHARING_PUSH_RETRIES = 2
    study = make_study(patient, tmp_path / "s", slices=1)
    push = _request(patient, [study], partner_overloaded, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.push_send.apply(args=[push.pk])
    push.refresh_from_db()
    assert (push.status, push.attempts) == ("failed", 3)
    assert push.error.startswith("Overloaded Clinic answered HTTP 503. Lightbox tried 3 times")
    assert len(mail.outbox) == 1 and not _shares(patient)


def test_an_unexpected_error_is_retried_then_the_push_fails_with_a_plain_reason(
        patient, tmp_path, settings, django_capture_on_commit_callbacks):
    settings.SHARING_PUSH_RETRIES = 1
    broken = Partner.objects.create(name="Misconfigured", stow_url="no scheme here")  # the admin's form would refuse it
    study = make_study(patient, tmp_path / "s", slices=1)
    push = _request(patient, [study], broken, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.push_send.apply(args=[push.pk])
    push.refresh_from_db()
    assert (push.status, push.attempts, push.error) == ("failed", 2, tasks.UNEXPECTED)
    assert len(mail.outbox) == 1

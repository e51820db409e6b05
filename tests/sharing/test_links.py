"""Share links (issue 20): the patient makes one (password again, link + code + QR shown once);
the recipient, with no account, opens it with the access code and the one-time code emailed to
them, and sees only the shared studies, each look an access event under their name; the patient
is told (notice + email, once a day per share), lists and revokes; every refusal looks the same;
guessing is rate limited; malformed input is never a 500."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AccessEvent
from core.actor import Actor, Kind
from imaging.models import Instance, Series, Study
from notices.models import Notice
from sharing import links
from sharing.models import Share, ShareVisit
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.exports.conftest import make_study
from tests.factories import actor_of

pytestmark = pytest.mark.django_db


def _unnonced(body: bytes) -> bytes:
    body = re.sub(rb'nonce="[^"]+"', b'nonce="-"', body)
    return re.sub(rb'(name="csrfmiddlewaretoken" value=")[^"]+', rb"\1-", body)


def make_share(user, studies, **fields) -> links.Created:
    created = links.share_create(
        actor=actor_of(user), study_ids=[s.pk for s in studies], recipient_name="Dr Ada Lowe",
        recipient_organization="Northbrook Clinic", recipient_email="ada@northbrook.example", days=7,
        allow_download=False)
    if fields:
        Share.objects.filter(pk=created.share.pk).update(**fields)
    return created


def open_share(client: Client, created: links.Created, django_capture_on_commit_callbacks) -> Client:
    """The recipient's two steps; returns the client with an open visit."""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(created.path, {"code": created.code.lower().replace("-", " ")})
    assert response.status_code == 302 and response["Location"].endswith("/code/"), response.content[:300]
    otp = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    assert mail.outbox[-1].to == ["ada@northbrook.example"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(created.path + "code/", {"otp": otp})
    assert response.status_code == 302 and response["Location"].endswith("/studies/")
    return client


@pytest.fixture
def study(patient, tmp_path) -> Study:
    return make_study(patient, tmp_path / "mine", slices=2)


def _viewer(created: links.Created, study: Study) -> str:
    series = Series.objects.filter(study=study).first()
    return f"{created.path}studies/{study.pk}/series/{series.pk}/"


# --- The patient makes a share ----------------------------------------------------------------


def test_sharing_asks_for_the_password_then_shows_link_code_and_qr_once(client: Client, patient, study):
    login_verified(client, patient)
    data = {"studies": [str(study.pk)], "recipient_name": "Dr Ada Lowe", "recipient_organization": "Northbrook Clinic",
            "recipient_email": "ada@northbrook.example", "days": "7", "access": "view"}
    response = client.post("/sharing/new/", data)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert not Share.objects.exists()
    reauthenticate(client)
    response = client.post("/sharing/new/", data)
    page = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    share = Share.objects.get()
    token = re.search(r'id="share-url" href="[^"]*/s/([^/"]+)/"', page).group(1)
    code = re.search(r'id="share-code"[^>]*>([A-Z0-9-]+)<', page).group(1)
    assert "<svg" in page and re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", code)
    # Stored hashed only: neither the token nor the code is in the row.
    assert token not in share.token_hash and code.replace("-", "") not in share.code_hash
    assert (share.patient, share.created_by, list(share.studies.all()), share.allow_download) == (
        patient.patient, patient, [study], False)
    assert dt.timedelta(days=6, hours=23) < share.expires_at - timezone.now() <= dt.timedelta(days=7)


def test_the_service_checks_the_password_and_the_days(patient, study):
    with pytest.raises(ReauthenticationRequired):
        links.share_create(actor=actor_of(patient, reauthenticated=False), study_ids=[study.pk], recipient_name="A",
                           recipient_organization="B", recipient_email="a@b.example", days=7, allow_download=False)
    for days in (0, 31):
        with pytest.raises(Exception, match="between 1 and 30"):
            links.share_create(actor=actor_of(patient), study_ids=[study.pk], recipient_name="A",
                               recipient_organization="B", recipient_email="a@b.example", days=days, allow_download=False)
    assert not Share.objects.exists()


def test_another_patients_study_cannot_be_shared(client: Client, patient, other_patient, study, tmp_path):
    theirs = make_study(other_patient, tmp_path / "theirs", slices=1)
    login_verified(client, patient)
    reauthenticate(client)
    response = client.post("/sharing/new/", {
        "studies": [str(theirs.pk)], "recipient_name": "X", "recipient_organization": "Y",
        "recipient_email": "x@y.example", "days": "7", "access": "view"})
    assert response.status_code == 400 and not Share.objects.exists()


# --- The recipient --------------------------------------------------------------------------


def test_the_recipient_sees_only_the_shared_study_and_each_look_is_logged(
        client: Client, patient, study, tmp_path, django_capture_on_commit_callbacks):
    other_own = make_study(patient, tmp_path / "not-shared", slices=1)
    created = make_share(patient, [study])
    assert client.get(created.path + "studies/")["Location"] == created.path  # no codes yet
    open_share(client, created, django_capture_on_commit_callbacks)
    page = client.get(created.path + "studies/").content.decode()
    assert patient.patient.name in page and "Dr Ada Lowe" in page
    assert f'id="study-{study.pk}"' in page and f'id="study-{other_own.pk}"' not in page
    viewer = client.get(_viewer(created, study))
    assert viewer.status_code == 200 and b'id="viewer-config"' in viewer.content
    instance = Instance.objects.filter(series__study=study).order_by("pk").first()
    frame = client.get(f"{created.path}studies/{study.pk}/series/{instance.series_id}/instances/{instance.pk}/frames/0.png")
    assert frame.status_code == 200 and frame["Content-Type"] == "image/png"
    # The study not shared, even of the same patient: a 404, like a missing one.
    assert client.get(_viewer(created, other_own)).status_code == 404
    views = AccessEvent.objects.filter(patient=patient.patient, action="view")
    event = views.get()
    assert (event.actor_type, event.actor_name, event.organization, event.purpose, event.study_id, event.actor_ref) == (
        "clinician", "Dr Ada Lowe", "Northbrook Clinic", "treatment", study.pk, f"share:{created.share.pk}")
    assert event.details["via"] == "share" and event.details["share"] == created.share.pk
    assert event.details["page"] == "viewer"
    # The patient's log says who, where, and that it came through their link.
    login_verified(patient_client := Client(), patient)
    log = patient_client.get("/access-log/").content.decode()
    assert "Dr Ada Lowe at Northbrook Clinic viewed your CT chest" in log.replace("\n", " ")
    assert "through a link you shared" in log


def test_the_patient_is_told_once_a_day_per_share(client: Client, patient, study, django_capture_on_commit_callbacks):
    created = make_share(patient, [study])
    mail.outbox.clear()
    open_share(client, created, django_capture_on_commit_callbacks)
    notice = Notice.objects.get(patient=patient.patient, kind=Notice.Kind.SHARE_OPENED)
    assert "Dr Ada Lowe" in notice.subject and notice.link == "/sharing/"
    to_patient = [m for m in mail.outbox if m.to == [patient.email]]
    assert len(to_patient) == 1 and "Dr Ada Lowe" in to_patient[0].subject
    open_share(Client(), created, django_capture_on_commit_callbacks)  # a second browser, same day
    assert Notice.objects.filter(kind=Notice.Kind.SHARE_OPENED).count() == 1
    assert len([m for m in mail.outbox if m.to == [patient.email]]) == 1


def test_the_access_code_alone_is_not_enough(client: Client, patient, study, django_capture_on_commit_callbacks):
    created = make_share(patient, [study])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(created.path, {"code": created.code})
    assert client.get(created.path + "studies/")["Location"] == created.path
    for _ in range(links.OTP_TRIES):
        assert client.post(created.path + "code/", {"otp": "000000"}).status_code == 400
    otp = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    # Tries used up: even the right code is refused now.
    assert client.post(created.path + "code/", {"otp": otp}).status_code == 400
    assert ShareVisit.objects.get().otp_tries == links.OTP_TRIES and ShareVisit.objects.get().verified_at is None


@pytest.mark.parametrize("case", ["wrong-code", "unknown", "expired", "revoked"])
def test_every_refusal_answers_the_same(client: Client, patient, study, case, settings):
    settings.SHARE_CODE_RATE = 1000
    created = make_share(patient, [study])
    if case == "expired":
        Share.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    if case == "revoked":
        links.share_revoke(actor=actor_of(patient), share_id=created.share.pk)
    path = "/s/" + "x" * 43 + "/" if case == "unknown" else created.path
    code = "AAAAA-AAAAA" if case == "wrong-code" else created.code
    response = client.post(path, {"code": code}, HTTP_X_REQUEST_ID="share")
    reference = Client().post("/s/nothing-here/", {"code": "BBBBB-BBBBB"}, HTTP_X_REQUEST_ID="share")
    assert response.status_code == reference.status_code == 400
    assert _unnonced(response.content).replace(path.encode(), b"") == _unnonced(reference.content).replace(b"/s/nothing-here/", b"")
    assert links.REFUSED_MESSAGE.split(":")[0].encode() in response.content
    assert not ShareVisit.objects.exists()


def test_revoking_or_expiry_ends_an_open_visit(client: Client, patient, study, django_capture_on_commit_callbacks):
    created = make_share(patient, [study])
    open_share(client, created, django_capture_on_commit_callbacks)
    assert client.get(_viewer(created, study)).status_code == 200
    links.share_revoke(actor=actor_of(patient), share_id=created.share.pk)
    assert client.get(_viewer(created, study))["Location"] == created.path
    assert client.get(created.path + "studies/")["Location"] == created.path
    second = make_share(patient, [study])
    open_share(Client(), second, django_capture_on_commit_callbacks)
    Share.objects.filter(pk=second.share.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert client.get(second.path + "studies/")["Location"] == second.path


def test_guessing_is_rate_limited(client: Client, patient, study, settings):
    settings.SHARE_CODE_RATE = 3
    created = make_share(patient, [study])
    for _ in range(3):
        assert client.post(created.path, {"code": "AAAAA-AAAAA"}).status_code == 400
    # Used up: even the right code waits, and another token from the same address too.
    refused = client.post(created.path, {"code": created.code})
    assert refused.status_code == 429 and refused["Retry-After"]
    assert client.post("/s/another-token/", {"code": "AAAAA"}).status_code == 429
    assert not ShareVisit.objects.exists()


@pytest.mark.parametrize("token", ["%00", "a" * 500, "ü🙂", "..", "%2F%2Fevil"])
def test_malformed_input_is_never_a_500(client: Client, token, settings):
    settings.SHARE_CODE_RATE = 1000
    assert client.get(f"/s/{token}/").status_code in (200, 404)
    assert client.post(f"/s/{token}/", {"code": "\x00" * 50}).status_code in (400, 404)
    assert client.post(f"/s/{token}/code/", {"otp": "x"}).status_code in (302, 404)
    assert client.get(f"/s/{token}/studies/").status_code in (302, 404)
    assert client.get(f"/s/{token}/studies/1/series/1/instances/1/frames/0.png").status_code == 404


def test_the_recipient_actor_reaches_only_the_shared_studies(patient, other_patient, study, tmp_path):
    mine_not_shared = make_study(patient, tmp_path / "n", slices=1)
    theirs = make_study(other_patient, tmp_path / "t", slices=1)
    share = make_share(patient, [study]).share
    actor = Actor(kind=Kind.SHARE_RECIPIENT, name="Dr", patient_ids=frozenset({patient.patient.pk}), share_id=share.pk,
                  study_ids=frozenset({study.pk}))
    assert list(Study.objects.for_actor(actor)) == [study]
    assert set(Series.objects.for_actor(actor).values_list("study_id", flat=True)) == {study.pk}
    assert set(Instance.objects.for_actor(actor).values_list("series__study_id", flat=True)) == {study.pk}
    # Nothing else of the patient: not their log, not their shares.
    assert not AccessEvent.objects.for_actor(actor).exists() and not Share.objects.for_actor(actor).exists()
    # A study id of another patient named in study_ids is still out of reach.
    wrong = Actor(kind=Kind.SHARE_RECIPIENT, name="Dr", patient_ids=frozenset({patient.patient.pk}),
                  study_ids=frozenset({theirs.pk, mine_not_shared.pk}))
    assert list(Study.objects.for_actor(wrong)) == [mine_not_shared]


# --- The patient's list and revoke -------------------------------------------------------------


def test_the_list_shows_status_and_each_look_and_revoke_works(
        client: Client, patient, other_patient, study, tmp_path, django_capture_on_commit_callbacks):
    created = make_share(patient, [study])
    theirs = make_share(other_patient, [make_study(other_patient, tmp_path / "o", slices=1)])
    open_share(Client(), created, django_capture_on_commit_callbacks)
    login_verified(client, patient)
    page = client.get("/sharing/").content.decode()
    assert f'id="share-{created.share.pk}"' in page and f'id="share-{theirs.share.pk}"' not in page
    assert "Dr Ada Lowe" in page and "Active" in page and "1 view," not in page  # opened, not yet viewed
    assert client.get(f"/sharing/links/{created.share.pk}/revoke/").status_code == 405
    assert client.post(f"/sharing/links/{theirs.share.pk}/revoke/").status_code == 404
    assert client.post("/sharing/links/987654/revoke/").status_code == 404
    assert Share.objects.get(pk=theirs.share.pk).revoked_at is None
    response = client.post(f"/sharing/links/{created.share.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/sharing/"
    share = Share.objects.get(pk=created.share.pk)
    assert share.revoked_at is not None and share.revoked_by == "you"
    assert "Revoked" in client.get("/sharing/").content.decode()


@pytest.mark.parametrize(("method", "url"), [("get", "/sharing/new/"), ("post", "/sharing/links/1/revoke/")])
def test_anonymous_and_password_only_are_sent_away(client: Client, patient, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    login_password_only(client, patient)
    response = getattr(client, method)(url)
    assert response.status_code == 302 and response["Location"].startswith("/account/2fa/")


# --- View and download: the encrypted export archive -------------------------------------------


@pytest.fixture
def downloads_dir(settings, tmp_path):
    settings.EXPORTS_DIR = tmp_path / "exports"
    return settings.EXPORTS_DIR


def test_the_recipient_downloads_the_encrypted_archive_and_it_is_logged(
        client: Client, patient, study, downloads_dir, django_capture_on_commit_callbacks):
    from exports.services import archive_path, export_package

    with django_capture_on_commit_callbacks(execute=False):
        created = links.share_create(
            actor=actor_of(patient), study_ids=[study.pk], recipient_name="Dr Ada Lowe", recipient_organization="Northbrook Clinic",
            recipient_email="ada@northbrook.example", days=7, allow_download=True)
    share = created.share
    assert created.passphrase and share.export is not None and list(share.export.studies.all()) == [study]
    open_share(client, created, django_capture_on_commit_callbacks)
    assert b"Download the scans" in client.get(created.path + "studies/").content
    # Still being packaged: said plainly, nothing recorded.
    assert client.post(created.path + "download/").status_code == 409
    assert export_package(export_id=share.export.pk) == "ready"
    response = client.post(created.path + "download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    share.export.refresh_from_db()
    assert b"".join(response.streaming_content) == archive_path(share.export).read_bytes()
    event = AccessEvent.objects.get(patient=patient.patient, action="download")
    assert (event.actor_type, event.actor_name, event.organization, event.details["via"], event.details["export"]) == (
        "clinician", "Dr Ada Lowe", "Northbrook Clinic", "share", share.export.pk)
    assert client.get(created.path + "download/").status_code == 405
    links.share_revoke(actor=actor_of(patient), share_id=share.pk)
    assert client.post(created.path + "download/")["Location"] == created.path


def test_a_view_only_share_has_no_download(client: Client, patient, study, django_capture_on_commit_callbacks):
    created = make_share(patient, [study])
    assert not created.passphrase and created.share.export is None
    open_share(client, created, django_capture_on_commit_callbacks)
    assert b"Download the scans" not in client.get(created.path + "studies/").content
    assert client.post(created.path + "download/").status_code == 404
    assert not AccessEvent.objects.filter(action="download").exists()


def test_a_study_page_offers_sharing_it_and_the_form_starts_from_it(client: Client, patient, study):
    login_verified(client, patient)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/sharing/new/?study={study.pk}"' in page and 'href="/sharing/"' in page  # the button and the menu
    reauthenticate(client)
    form = client.get(f"/sharing/new/?study={study.pk}").content.decode()
    assert re.search(rf'value="{study.pk}"[^>]*checked|checked[^>]*value="{study.pk}"', form)


def test_the_next_day_an_opening_is_told_again(patient, study, django_capture_on_commit_callbacks):
    share = make_share(patient, [study]).share
    today = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        links._tell_patient(share, today)
        links._tell_patient(share, today + dt.timedelta(hours=1) if timezone.localdate(today + dt.timedelta(hours=1)) == timezone.localdate(today) else today)
        links._tell_patient(share, today + dt.timedelta(days=1))
    assert Notice.objects.filter(kind=Notice.Kind.SHARE_OPENED).count() == 2
    assert len([m for m in mail.outbox if m.to == [patient.email]]) == 2


def test_visits_no_one_can_use_are_purged(patient, study, django_capture_on_commit_callbacks):
    from sharing.tasks import reconcile

    live = make_share(patient, [study])
    ended = make_share(patient, [study])
    now = timezone.now()

    def visit(share, secret, *, sent_ago, verified_ago=None):
        ShareVisit.objects.create(share=share.share, secret_hash=links._hash("visit", secret), otp_hash="-",
                                  otp_sent_at=now - sent_ago,
                                  verified_at=None if verified_ago is None else now - verified_ago)

    visit(live, "fresh-code", sent_ago=dt.timedelta(minutes=1))
    visit(live, "open", sent_ago=dt.timedelta(hours=1), verified_ago=dt.timedelta(hours=1))
    visit(live, "code-too-old", sent_ago=links.OTP_VALID + dt.timedelta(minutes=1))
    visit(live, "open-too-long", sent_ago=links.VISIT_VALID * 2, verified_ago=links.VISIT_VALID + dt.timedelta(minutes=1))
    visit(ended, "of-a-revoked-share", sent_ago=dt.timedelta(minutes=1), verified_ago=dt.timedelta(minutes=1))
    links.share_revoke(actor=actor_of(patient), share_id=ended.share.pk)
    reconcile()  # the minute task runs the purge
    left = {h for h in ShareVisit.objects.values_list("secret_hash", flat=True)}
    assert left == {links._hash("visit", "fresh-code"), links._hash("visit", "open")}


def test_a_download_share_keeps_its_archive_as_long_as_the_link_lasts(
        patient, study, downloads_dir, settings, django_capture_on_commit_callbacks):
    # The archive expired after EXPORTS_EXPIRY_DAYS (7) whatever the share's length: a doctor given
    # 30 days found "not available" from day 8, and the purge deleted the file.
    from exports.services import export_package, export_request

    settings.EXPORTS_EXPIRY_DAYS = 7
    with django_capture_on_commit_callbacks(execute=False):
        created = links.share_create(
            actor=actor_of(patient), study_ids=[study.pk], recipient_name="Dr Ada Lowe", recipient_organization="Northbrook Clinic",
            recipient_email="ada@northbrook.example", days=30, allow_download=True)
        own = export_request(actor=actor_of(patient), study_ids=[study.pk], deidentify=False).export
    for export in (created.share.export, own):
        assert export_package(export_id=export.pk) == "ready"
        export.refresh_from_db()
    assert created.share.export.expires_at >= created.share.expires_at
    # The patient's own export keeps its seven days.
    assert own.expires_at - own.finished_at == dt.timedelta(days=7)


def test_the_patients_own_downloads_do_not_delete_the_archive_a_link_still_uses(
        client: Client, patient, study, downloads_dir, settings, django_capture_on_commit_callbacks):
    # The share's archive is the patient's export: their fifth complete download marked it
    # "downloaded" and deleted the file, and the doctor's link answered "not available" for the
    # rest of the share.
    from exports.models import ExportRequest
    from exports.services import archive_path, export_download, export_download_finished, export_package

    settings.EXPORTS_MAX_DOWNLOADS = 2
    with django_capture_on_commit_callbacks(execute=False):
        created = links.share_create(
            actor=actor_of(patient), study_ids=[study.pk], recipient_name="Dr Ada Lowe", recipient_organization="Northbrook Clinic",
            recipient_email="ada@northbrook.example", days=30, allow_download=True)
    export = created.share.export
    assert export_package(export_id=export.pk) == "ready"
    actor = actor_of(patient, reauthenticated=True)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            download = export_download(actor=actor, export_id=export.pk)
            b"".join(download.chunks)
            export_download_finished(actor=actor, export_id=export.pk, complete=True)
    export.refresh_from_db()
    assert export.downloads_left == 0 and archive_path(export).exists()
    from exports.services import ExportUnavailable

    with pytest.raises(ExportUnavailable, match="maximum number of times"):
        export_download(actor=actor, export_id=export.pk)
    open_share(client, created, django_capture_on_commit_callbacks)
    response = client.post(created.path + "download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == archive_path(export).read_bytes()
    # Once the link has ended, the patient's used-up export goes as before.
    ExportRequest.objects.filter(pk=export.pk).update(keep_until=timezone.now() - dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        ExportRequest.objects.filter(pk=export.pk).update(downloads_completed=1, downloads=2)
        export_download_finished(actor=actor, export_id=export.pk, complete=True)
    export.refresh_from_db()
    assert export.status == ExportRequest.Status.DOWNLOADED and not archive_path(export).exists()

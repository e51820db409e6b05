"""The export pages: access control, reauthentication, the passphrase shown once, status JSON,
download limits and expiry, revoke, the "ready" notice (dismissed by a POST or a download, never
by a GET), and one access event per request and per download."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.forms.models import model_to_dict
from django.http import Http404
from django.test import Client
from django.utils import timezone

from audit.models import AccessEvent
from exports import services
from exports.models import ExportRequest
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.exports.conftest import make_study
from tests.factories import PASSWORD, actor_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_export(patient, tmp_path, exports_dir) -> ExportRequest:
    study = make_study(patient, tmp_path / "s", slices=1)
    export = services._create(patient=patient.patient, studies=[study], deidentify=False, requested_by_id=patient.pk,
                              passphrase="alpha-bravo-charlie-delta-echo-foxtrot")
    assert services.export_package(export_id=export.pk) == "ready"
    export.refresh_from_db()
    return export


@pytest.fixture
def other_export(other_patient, tmp_path, exports_dir) -> ExportRequest:
    study = make_study(other_patient, tmp_path / "o", slices=1)
    return services._create(patient=other_patient.patient, studies=[study], deidentify=False,
                            requested_by_id=other_patient.pk, passphrase="golf-hotel-india-juliet-kilo-lima")


def pages(export: ExportRequest) -> dict[str, tuple[str, str]]:
    return {
        "detail": ("get", f"/exports/{export.pk}/"),
        "status": ("get", f"/exports/{export.pk}/status/"),
        "cancel": ("post", f"/exports/{export.pk}/cancel/"),
        "download": ("post", f"/exports/{export.pk}/download/"),
        "revoke": ("post", f"/exports/{export.pk}/revoke/"),
        "seen": ("post", f"/exports/{export.pk}/seen/"),
    }


PAGES = ["detail", "status", "cancel", "download", "revoke", "seen"]


def downloads(export) -> int:
    return AccessEvent.objects.filter(patient=export.patient, action="download").count()


@pytest.mark.parametrize("page", [*PAGES, "list", "new"])
def test_anonymous_is_sent_to_login(client: Client, ready_export, page):
    method, url = {**pages(ready_export), "list": ("get", "/exports/"), "new": ("get", "/exports/new/")}[page]
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("page", [*PAGES, "list", "new"])
def test_password_only_session_is_sent_to_the_second_factor(client: Client, ready_export, patient, page):
    login_password_only(client, patient)
    method, url = {**pages(ready_export), "list": ("get", "/exports/"), "new": ("get", "/exports/new/")}[page]
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa/")
    assert downloads(ready_export) == 0


@pytest.mark.parametrize("page", PAGES)
def test_other_patients_export_is_404_like_a_missing_one(client: Client, patient, other_export, page):
    login_verified(client, patient)
    reauthenticate(client)
    method, url = pages(other_export)[page]
    assert getattr(client, method)(url).status_code == 404
    assert getattr(client, method)(url.replace(f"/{other_export.pk}/", "/999999/")).status_code == 404
    other_export.refresh_from_db()
    assert other_export.status == "queued"


@pytest.mark.parametrize("page", PAGES)
def test_wrong_method_is_405(patient_client: Client, ready_export, page):
    method, url = pages(ready_export)[page]
    wrong = "post" if method == "get" else "get"
    assert getattr(patient_client, wrong)(url).status_code == 405
    assert downloads(ready_export) == 0


def test_privacy_officer_sees_no_patient_export(client: Client, officer, ready_export):
    login_verified(client, officer)
    assert client.get(f"/exports/{ready_export.pk}/").status_code == 404
    assert client.get("/exports/new/").status_code == 403


def test_request_needs_a_fresh_reauthentication_and_writes_one_event(patient_client: Client, patient, tmp_path, exports_dir):
    study = make_study(patient, tmp_path / "s", slices=1)
    form = patient_client.get("/exports/new/")
    assert form.status_code == 200 and "no-store" in form["Cache-Control"]
    assert study.description in form.content.decode()

    response = patient_client.post("/exports/new/", {"scope": "all", "kind": "original"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")
    assert ExportRequest.objects.count() == 0

    # allauth resumes the suspended POST after the password: the passphrase page comes back.
    response = patient_client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 200
    export = ExportRequest.objects.get()
    assert export.status == "queued" and export.requested_by == patient
    assert list(export.studies.all()) == [study]
    assert response.context["passphrase"] in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    events = AccessEvent.objects.filter(patient=patient.patient, action="export")
    assert events.count() == 1 and events.get().actor_type == "patient"

    # Shown once: no later page carries it.
    passphrase = response.context["passphrase"]
    assert passphrase not in patient_client.get(f"/exports/{export.pk}/").content.decode()
    assert passphrase not in patient_client.get("/exports/").content.decode()


def test_request_cannot_pick_another_patients_study(patient_client: Client, patient, other_patient, tmp_path, exports_dir):
    make_study(patient, tmp_path / "mine", slices=1)
    theirs = make_study(other_patient, tmp_path / "theirs", slices=1)
    reauthenticate(patient_client)
    response = patient_client.post("/exports/new/", {"scope": "selected", "studies": [str(theirs.pk)], "kind": "original"})
    assert response.status_code == 400 and "passphrase" not in response.context
    assert ExportRequest.objects.count() == 0


def test_status_endpoint_reports_progress_without_patient_data(patient_client: Client, ready_export):
    body = patient_client.get(f"/exports/{ready_export.pk}/status/").json()
    assert body == {"id": ready_export.pk, "status": "ready", "label": "Ready to download", "progress": 100,
                    "active": False, "ready": True, "error": ""}


def test_download_needs_reauthentication_counts_and_is_logged(patient_client: Client, patient, ready_export):
    url = f"/exports/{ready_export.pk}/download/"
    response = patient_client.post(url)
    assert response.status_code == 302
    back = f"/exports/{ready_export.pk}/?download=ready"
    assert response["Location"] == "/accounts/reauthenticate/?" + urlencode({"next": back})
    assert downloads(ready_export) == 0
    # After the password: back on the export's page, told to download now (the file itself would
    # leave the password page on screen and invite a second, logged download).
    response = patient_client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == back
    assert "Your password is confirmed" in patient_client.get(back).content.decode()
    assert downloads(ready_export) == 0
    response = patient_client.post(url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="lightbox-export-{ready_export.pk}.zip"'
    body = b"".join(response.streaming_content)
    assert body == services.archive_path(ready_export).read_bytes()
    ready_export.refresh_from_db()
    assert ready_export.downloads == 1 and downloads(ready_export) == 1
    event = AccessEvent.objects.get(patient=patient.patient, action="download")
    assert event.actor_type == "patient" and event.details["export"] == ready_export.pk


def test_download_limit(patient_client: Client, ready_export):
    reauthenticate(patient_client)
    url = f"/exports/{ready_export.pk}/download/"
    for _ in range(ready_export.max_downloads):
        response = patient_client.post(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content)
    refused = patient_client.post(url)
    assert refused.status_code == 410
    assert "maximum number" in refused.content.decode()
    assert downloads(ready_export) == ready_export.max_downloads


def test_expired_link_is_refused(patient_client: Client, ready_export):
    ExportRequest.objects.filter(pk=ready_export.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    reauthenticate(patient_client)
    response = patient_client.post(f"/exports/{ready_export.pk}/download/")
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert downloads(ready_export) == 0


def test_expiry_defaults_to_seven_days(ready_export):
    assert ready_export.expires_at - ready_export.finished_at == dt.timedelta(days=7)
    assert ready_export.max_downloads == 5


def test_revoke_deletes_the_archive_and_refuses_downloads(patient_client: Client, ready_export):
    path = services.archive_path(ready_export)
    assert path.exists()
    assert patient_client.post(f"/exports/{ready_export.pk}/revoke/").status_code == 302
    assert not path.exists()
    reauthenticate(patient_client)
    assert patient_client.post(f"/exports/{ready_export.pk}/download/").status_code == 410
    assert downloads(ready_export) == 0


def test_list_shows_the_ready_notice_until_dismissed(patient_client: Client, ready_export):
    page = patient_client.get("/exports/").content.decode()
    assert "An export you asked for is ready." in page
    detail = patient_client.get(f"/exports/{ready_export.pk}/")
    assert "Download the encrypted file" in detail.content.decode()
    # Opening the export's page is a GET: the notice stays until the patient acts on it.
    assert "An export you asked for is ready." in patient_client.get("/exports/").content.decode()
    response = patient_client.post(f"/exports/{ready_export.pk}/seen/")
    assert response.status_code == 302 and response["Location"] == "/exports/"
    assert "An export you asked for is ready." not in patient_client.get("/exports/").content.decode()
    ready_export.refresh_from_db()
    assert ready_export.notice_seen_at is not None and ready_export.downloads == 0


def test_downloading_the_archive_marks_the_notice_seen(patient_client: Client, ready_export):
    reauthenticate(patient_client)
    response = patient_client.post(f"/exports/{ready_export.pk}/download/")
    assert response.status_code == 200 and b"".join(response.streaming_content)
    assert "An export you asked for is ready." not in patient_client.get("/exports/").content.decode()


def test_dismissing_the_notice_needs_the_csrf_token(patient, ready_export):
    client = login_verified(Client(enforce_csrf_checks=True), patient)
    assert client.post(f"/exports/{ready_export.pk}/seen/").status_code == 403
    ready_export.refresh_from_db()
    assert ready_export.notice_seen_at is None


def _rows() -> tuple[list[dict], int]:
    return [model_to_dict(e) | {"studies": None} for e in ExportRequest.objects.order_by("pk")], AccessEvent.objects.count()


@pytest.mark.parametrize("url", ["/exports/", "/exports/{pk}/", "/exports/{pk}/status/", "/exports/{pk}/?download=ready"])
def test_get_of_an_export_page_changes_no_row(patient_client: Client, ready_export, url):
    before = _rows()
    assert patient_client.get(url.format(pk=ready_export.pk)).status_code == 200
    assert _rows() == before


def test_services_answer_404_for_another_patients_export(patient, other_export):
    actor = actor_of(patient)
    for call in (services.export_cancel, services.export_revoke, services.export_mark_seen, services.export_download):
        with pytest.raises(Http404):
            call(actor=actor, export_id=other_export.pk)
    other_export.refresh_from_db()
    assert other_export.status == "queued" and other_export.downloads == 0
    assert AccessEvent.objects.filter(patient=other_export.patient).count() == 0


def test_services_recheck_the_password(patient, ready_export):
    with pytest.raises(ReauthenticationRequired):
        services.export_download(actor=actor_of(patient, reauthenticated=False), export_id=ready_export.pk)
    with pytest.raises(ReauthenticationRequired):
        services.export_request(actor=actor_of(patient, reauthenticated=False), study_ids=None, deidentify=False)
    assert downloads(ready_export) == 0 and ExportRequest.objects.count() == 1


def test_empty_state(patient_client: Client):
    page = patient_client.get("/exports/").content.decode()
    assert "You have not asked for any exports yet." in page
    assert "You have no studies to export yet." in patient_client.get("/exports/new/").content.decode()


def test_request_without_studies_is_a_form_error(patient_client: Client, patient):
    reauthenticate(patient_client)
    response = patient_client.post("/exports/new/", {"scope": "all", "kind": "original"})
    assert response.status_code == 400 and "passphrase" not in response.context
    assert ExportRequest.objects.count() == 0
    assert AccessEvent.objects.filter(action="export").count() == 0


# --- Which studies an export holds (issue 19 item 12) -----------------------------------------


def _export_of(patient, studies):
    export = ExportRequest.objects.create(patient=patient.patient, requested_by=patient, status="queued")
    export.studies.set(studies)
    return export


def _studies(patient, n: int, start: int = 0) -> list:
    from imaging.models import Study

    return [
        Study.objects.create(patient=patient.patient, study_uid=f"1.2.826.0.1.3680043.10.66.{start + i}",
                             description=f"CT CHEST PART {start + i}", study_date=dt.date(2024, 1, 1) + dt.timedelta(days=start + i),
                             modalities="CT")
        for i in range(n)
    ]


def test_the_export_page_names_each_study_with_its_date_and_modality(patient, other_patient):
    client = login_verified(Client(), patient)
    mine = _studies(patient, 2)
    _export_of(patient, _studies(patient, 1, start=10))  # another export's study is not listed
    export = _export_of(patient, mine)
    html = client.get(f"/exports/{export.pk}/").content.decode()
    assert "The 2 studies in this export" in html
    for study in mine:
        assert f"CT chest part {study.study_uid[-1]}" in html  # in plain case, original on hover
        assert f'datetime="{study.study_date:%Y-%m-%d}"' in html
    assert "part 10" not in html
    assert '<abbr title="Computed Tomography">CT</abbr>' in html


def test_the_downloads_page_lists_each_exports_studies_without_a_query_per_row(patient):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = login_verified(Client(), patient)
    _export_of(patient, _studies(patient, 2))
    client.get("/exports/")  # warm the session and per-user caches
    with CaptureQueriesContext(connection) as one:
        html = client.get("/exports/").content.decode()
    assert "CT chest part 0" in html and "CT chest part 1" in html and "2 studies" in html
    for k in range(1, 5):
        _export_of(patient, _studies(patient, 2, start=10 * k))
    with CaptureQueriesContext(connection) as five:
        html = client.get("/exports/").content.decode()
    assert "CT chest part 40" in html and "CT chest part 11" in html
    assert len(five.captured_queries) == len(one.captured_queries)

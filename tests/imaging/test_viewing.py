"""The audited reads (``imaging.services.viewing``), the selectors under them, and the rules they
share with the views: one event per page and none for a 404 (docs/security.md §13), another
patient's or an un-narrowed officer's request answers 404 from the selector and from the view,
one window rule, one slice order, and views that write nothing themselves."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from allauth.core.exceptions import ReauthenticationRequired
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.http import Http404
from django.test import Client

from audit.models import AccessEvent
from imaging import selectors
from imaging.errors import RenderError
from imaging.models import Study
from imaging.services import ingest, integrity, rendering, viewing
from tests.conftest import login_verified, reauthenticate
from tests.factories import actor_of
from tests.imaging.helpers import importer, series_slices
from tests.imaging.test_views import import_for, urls, write_ct_series

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ct_study(patient, tmp_path) -> Study:
    return import_for(patient, write_ct_series(tmp_path / "ct", slices=3))


@pytest.fixture
def other_study(other_patient, tmp_path) -> Study:
    return import_for(other_patient, write_ct_series(tmp_path / "other", slices=2, patient_id="LBX-OTHER"))


def ids(study: Study) -> dict[str, int]:
    series = study.series.first()
    return {"study_id": study.pk, "series_id": series.pk, "instance_id": series.instances.first().pk}


def portal_events() -> int:
    return AccessEvent.objects.filter(source="portal").count()


# --- (a) study_open: one event, none for a 404 ------------------------------------------------


def test_study_open_selects_and_writes_exactly_one_event(patient, ct_study):
    before = AccessEvent.objects.count()
    opened = viewing.study_open(actor=actor_of(patient), study_id=ct_study.pk)
    assert opened.study == ct_study and [c.series for c in opened.cards] == list(ct_study.series.all())
    assert opened.integrity.total == 3 and opened.reveal_groups
    assert AccessEvent.objects.count() == before + 1
    event = AccessEvent.objects.latest("pk")
    assert (event.action, event.actor_type, event.actor_name, event.purpose, event.source) == (
        "view", "patient", "Patient (self)", "patient_request", "portal")
    assert (event.patient_id, event.study_id) == (patient.patient.pk, ct_study.pk)
    assert event.details == {"page": "study", "header_report": True}


@pytest.mark.parametrize("which", ["missing", "other"])
def test_study_open_of_a_study_out_of_reach_is_404_and_writes_nothing(patient, other_study, which):
    study_id = 999999 if which == "missing" else other_study.pk
    before = AccessEvent.objects.count()
    with pytest.raises(Http404):
        viewing.study_open(actor=actor_of(patient), study_id=study_id)
    assert AccessEvent.objects.count() == before


def test_series_open_gives_the_slices_in_order_and_writes_one_event(patient, ct_study):
    series = ct_study.series.get()
    opened = viewing.series_open(actor=actor_of(patient), study_id=ct_study.pk, series_id=series.pk)
    assert [s.position for s in opened.slices] == [-20.0, -15.0, -10.0]
    event = AccessEvent.objects.latest("pk")
    assert (event.action, event.study_id, event.details) == ("view", ct_study.pk, {"page": "viewer", "series": series.pk})


def test_instance_download_needs_a_recent_password_and_writes_one_event(patient, ct_study):
    before = portal_events()
    with pytest.raises(ReauthenticationRequired):
        viewing.instance_download(actor=actor_of(patient, reauthenticated=False), **ids(ct_study))
    assert portal_events() == before
    with pytest.raises(Http404):
        viewing.instance_download(actor=actor_of(patient), **ids(ct_study), frame=1)
    assert portal_events() == before

    downloaded = viewing.instance_download(actor=actor_of(patient), **ids(ct_study), center=40, width=400)
    assert downloaded.data.startswith(b"\x89PNG")
    event = AccessEvent.objects.latest("pk")
    assert (event.action, portal_events()) == ("download", before + 1)
    assert event.details == {"format": "png", "series": ids(ct_study)["series_id"],
                             "instance": ids(ct_study)["instance_id"], "frame": 0}


def test_copies_verify_is_for_patients_and_writes_one_query(patient, officer, ct_study):
    with pytest.raises(PermissionDenied):
        viewing.copies_verify(actor=actor_of(officer), uploads=[])
    results = viewing.copies_verify(actor=actor_of(patient), uploads=[("IM0001", io.BytesIO(b"not dicom"))])
    assert [r.outcome for r in results] == ["not_dicom"]
    event = AccessEvent.objects.latest("pk")
    assert (event.action, event.study_id, event.details) == ("query", None, {"page": "verify_copy", "files": 1, "not_dicom": 1})


# --- (b) another patient's objects: Http404 from the selectors and the services ------------------


def test_selectors_answer_404_for_another_patients_study_series_and_instance(patient, ct_study, other_study):
    actor, theirs = actor_of(patient), ids(other_study)
    with pytest.raises(Http404):
        selectors.study_get(actor=actor, study_id=theirs["study_id"])
    with pytest.raises(Http404):
        selectors.series_get(actor=actor, study_id=theirs["study_id"], series_id=theirs["series_id"])
    with pytest.raises(Http404):
        selectors.instance_get(actor=actor, **theirs)
    # Mixing one's own study id with their series or image does not reach them either.
    with pytest.raises(Http404):
        selectors.series_get(actor=actor, study_id=ct_study.pk, series_id=theirs["series_id"])
    with pytest.raises(Http404):
        selectors.instance_get(actor=actor, **{**theirs, "study_id": ct_study.pk})
    assert list(selectors.study_list(actor=actor)) == [ct_study]
    # Their own records answer as usual.
    assert selectors.instance_get(actor=actor_of(other_study.patient.user), **theirs).pk == theirs["instance_id"]


def test_services_answer_404_for_another_patients_objects_and_write_nothing(patient, other_study):
    actor, theirs = actor_of(patient), ids(other_study)
    with pytest.raises(Http404):
        viewing.series_open(actor=actor, study_id=theirs["study_id"], series_id=theirs["series_id"])
    with pytest.raises(Http404):
        viewing.instance_download(actor=actor, **theirs)
    assert AccessEvent.objects.filter(patient=other_study.patient, source="portal").count() == 0


@pytest.mark.parametrize("page", ["study", "viewer", "thumbnail", "frame", "download"])
def test_each_view_answers_404_for_another_patients_object(client: Client, patient, other_study, page):
    login_verified(client, patient)
    reauthenticate(client)
    assert client.get(urls(other_study)[page]).status_code == 404
    assert AccessEvent.objects.filter(patient=other_study.patient, source="portal").count() == 0


# --- (c) an officer who is not investigating reaches nothing -----------------------------------


@pytest.mark.parametrize("page", ["study", "viewer", "thumbnail", "frame", "download"])
def test_officer_not_investigating_gets_404_on_every_imaging_url(client: Client, officer, ct_study, page):
    login_verified(client, officer)
    reauthenticate(client)
    assert client.get(urls(ct_study)[page]).status_code == 404
    assert AccessEvent.objects.filter(patient=ct_study.patient, source="portal").count() == 0


def test_officer_pages_without_ids_show_no_patient_data(client: Client, officer, ct_study):
    login_verified(client, officer)
    home = client.get("/", follow=True)  # to the officer's own start page, the flag queue
    assert home.status_code == 200 and f"/studies/{ct_study.pk}/" not in home.content.decode()
    verify = client.get("/verify/")
    assert verify.status_code == 200 and verify.context["patient"] is None
    assert AccessEvent.objects.filter(source="portal").count() == 0


def test_officer_selectors_and_services_are_404_until_narrowed_to_the_flagged_patient(officer, ct_study):
    actor = actor_of(officer)
    with pytest.raises(Http404):
        selectors.study_get(actor=actor, study_id=ct_study.pk)
    with pytest.raises(Http404):
        viewing.study_open(actor=actor, study_id=ct_study.pk)
    assert list(selectors.study_list(actor=actor)) == []
    # Narrowed to the patient of a flag, the look is recorded under the officer's name.
    viewing.study_open(actor=actor.investigating(ct_study.patient_id), study_id=ct_study.pk)
    event = AccessEvent.objects.latest("pk")
    assert (event.actor_type, event.actor_name, event.purpose) == ("privacy_office", officer.public_name, "privacy_investigation")


# --- (d) one window rule ------------------------------------------------------------------------


def test_frame_view_accepts_the_window_limit_and_refuses_just_over_it_with_a_clear_400(patient_client: Client, ct_study):
    frame = urls(ct_study)["frame"]
    limit = rendering.WINDOW_LIMIT
    assert patient_client.get(f"{frame}?c={limit}&w={limit}").status_code == 200
    assert patient_client.get(f"{frame}?c=-{limit}&w=1").status_code == 200
    for query in (f"c={limit + 1}&w=400", f"c=-{limit + 1}&w=400", f"c=40&w={limit + 1}", "c=40&w=0.5"):
        response = patient_client.get(f"{frame}?{query}")
        assert response.status_code == 400, query
        assert response["Content-Type"].startswith("text/plain")
        assert "Invalid window" in response.content.decode() and f"{limit:,}" in response.content.decode(), query


def test_download_view_refuses_a_window_over_the_limit(patient_client: Client, ct_study):
    reauthenticate(patient_client)
    response = patient_client.get(urls(ct_study)["download"] + f"?c=40&w={rendering.WINDOW_LIMIT + 1}")
    assert response.status_code == 400
    assert AccessEvent.objects.filter(action="download").count() == 0


def test_render_frame_applies_the_same_window_rule(ct_study):
    instance = ct_study.series.get().instances.first()
    limit = rendering.WINDOW_LIMIT
    assert rendering.render_frame(instance, center=limit, width=limit).startswith(b"\x89PNG")
    with pytest.raises(RenderError):
        rendering.render_frame(instance, center=limit + 1, width=400)


def test_only_one_window_limit_exists():
    sources = "".join(p.read_text() for p in (ROOT / "imaging").rglob("*.py"))
    assert sources.count("WINDOW_LIMIT =") == 1
    assert not re.search(r"\b1e[67]\b|1_000_000|10_000_000", sources.replace("WINDOW_LIMIT = 1_000_000", ""))


# --- One slice order ----------------------------------------------------------------------------


def test_viewer_and_thumbnail_share_one_slice_order(patient, tmp_path, dicom_storage):
    # Arrival order and instance numbers both disagree with geometry (and, with an even count,
    # pick another middle slice); the viewer and the thumbnail must still agree on it.
    paths = write_ct_series(tmp_path / "ct", slices=4)
    study = import_for(patient, list(reversed(paths)))
    series = study.series.get()
    opened = viewing.series_open(actor=actor_of(patient), study_id=study.pk, series_id=series.pk)
    order = [s.instance.pk for s in opened.slices]
    assert [s["sop_uid"] for s in series_slices(series)] == [s.instance.sop_uid for s in opened.slices]
    rendering.render_thumbnail(series)
    middle = opened.slices[len(order) // 2].instance
    [cached] = [p for p in (dicom_storage / "renders").rglob("*") if p.is_file()]
    assert middle.sha256 in str(cached)


def test_slices_without_geometry_fall_back_to_instance_number_then_arrival(patient, tmp_path):
    study = import_for(patient, write_ct_series(tmp_path / "ct", slices=3))
    series = study.series.get()
    instances = list(series.instances.order_by("pk"))
    for n, instance in zip([2, None, 1], instances, strict=True):
        instance.meta = {k: v for k, v in instance.meta.items() if k != "image_position"}
        instance.number = n
        instance.save(update_fields=["meta", "number"])
    ordered = rendering.slices_in_order(series.instances.all())
    assert [s.instance.number for s in ordered] == [1, 2, None]
    assert all(s.position is None for s in ordered)


# --- Study status -------------------------------------------------------------------------------


def test_study_status_set_validates_saves_only_the_status_and_stays_in_reach(patient, other_patient, ct_study):
    Study.objects.filter(pk=ct_study.pk).update(description="As stored")
    ct_study.description = "Changed in memory only"
    integrity.study_status_set(actor=actor_of(patient), study=ct_study, status=Study.Status.UNDER_REVIEW)
    ct_study.refresh_from_db()
    assert (ct_study.status, ct_study.description) == ("under_review", "As stored")
    with pytest.raises(ValidationError):
        integrity.study_status_set(actor=actor_of(patient), study=ct_study, status="deleted")
    with pytest.raises(Study.DoesNotExist):
        integrity.study_status_set(actor=actor_of(other_patient), study=ct_study, status=Study.Status.AVAILABLE)
    ct_study.refresh_from_db()
    assert ct_study.status == "under_review"


# --- Ingest acts as the importer ----------------------------------------------------------------


def test_import_command_records_as_the_importer(tmp_path):
    paths = write_ct_series(tmp_path / "ct", slices=2)
    call_command("import_dicom", str(paths[0].parent), stdout=io.StringIO())
    event = AccessEvent.objects.get(action="ingest")
    assert (event.actor_type, event.actor_name, event.organization, event.purpose, event.source) == (
        "system", "Lightbox import", settings.HOSPITAL_NAME, "operations", "import")


def test_only_an_actor_reaching_every_record_may_import(patient, tmp_path):
    paths = write_ct_series(tmp_path / "ct", slices=1)
    with pytest.raises(PermissionDenied):
        ingest.dicom_import(actor=actor_of(patient), paths=paths)
    assert not Study.objects.exists()
    assert ingest.dicom_import(actor=importer(), paths=paths).imported == 1


# --- Views present; they do not write -----------------------------------------------------------


def test_an_integrity_alert_is_resolved_only_within_the_actors_reach(patient, other_patient, officer):
    from imaging.models import IntegrityAlert
    from tests.flags.conftest import make_study

    for user in (patient, other_patient):
        # A study whose stored file is missing: the integrity check raises one alert for it.
        integrity.instances_verify(study=make_study(user.patient, with_instance=True))
    mine = IntegrityAlert.objects.get(instance__series__study__patient=patient.patient)
    theirs = IntegrityAlert.objects.get(instance__series__study__patient=other_patient.patient)
    narrowed = actor_of(officer).investigating(patient.patient.pk)
    assert integrity.integrity_alert_resolve(actor=narrowed, alert_id=theirs.pk) is False
    assert integrity.integrity_alert_resolve(actor=narrowed, alert_id=mine.pk) is True
    assert integrity.integrity_alert_resolve(actor=narrowed, alert_id=mine.pk) is False  # already resolved
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.resolved_at is None and mine.resolved_at is not None

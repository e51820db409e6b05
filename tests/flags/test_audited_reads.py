"""The audited reads of flags are services: each records exactly one access event, none when the
answer is 404; another patient's report is a 404 at the service as at the page; the officer's
flag page records its look under the officer's name, as a privacy investigation. And the views
themselves write nothing (docs/security.md §13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client
from django.urls import reverse

from audit.models import AccessEvent
from core.actor import Actor
from flags import selectors, services
from flags.models import FlagEvent
from notices.models import Notice
from tests.conftest import login_verified
from tests.factories import actor_of
from tests.flags.conftest import make_event, make_study
from tests.flags.test_patient import raise_flag

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def events() -> list[AccessEvent]:
    return list(AccessEvent.objects.order_by("pk"))


def one_new(before: list[AccessEvent]) -> AccessEvent:
    (new,) = [e for e in events() if e not in before]
    return new


# --- The patient's audited reads -------------------------------------------------------------


def test_report_form_records_one_view_and_none_on_404(patient, other_patient, study, event):
    actor = actor_of(patient)
    before = events()
    target = services.flag_target_open(actor=actor, study_id=study.pk)
    look = one_new(before)
    assert target.study == study
    assert (look.action, look.purpose, look.actor_name, look.study, look.details) == (
        "view", "patient_request", "Patient (self)", study, {"page": "flag_new"})

    before = events()
    services.flag_target_open(actor=actor, access_event_id=event.pk)
    look = one_new(before)
    assert (look.study, look.details) == (study, {"page": "flag_new", "event": event.pk})

    theirs = make_study(other_patient.patient)
    their_event = make_event(other_patient.patient, study=theirs)
    before = events()
    for kwargs in ({"study_id": theirs.pk}, {"access_event_id": their_event.pk}, {"study_id": 999999}, {}):
        with pytest.raises(Http404):
            services.flag_target_open(actor=actor, **kwargs)
    assert events() == before


def test_my_reports_records_one_view(patient, study):
    raise_flag(patient, study)
    before = events()
    reports = services.flag_list_open(actor=actor_of(patient))
    look = one_new(before)
    assert [f.study for f in reports.flags] == [study] and reports.unread == 1
    assert (look.action, look.actor_name, look.study, look.details) == ("view", "Patient (self)", None, {"page": "flags_mine"})


def test_my_reports_of_an_account_without_a_record_records_nothing(officer):
    before = events()
    reports = services.flag_list_open(actor=actor_of(officer))
    assert (reports.patient, reports.flags, reports.notices) == (None, [], [])
    assert events() == before


def test_a_report_page_records_one_view_and_another_patients_is_404(patient, other_patient, study):
    flag = raise_flag(patient, study)
    before = events()
    assert services.flag_open(actor=actor_of(patient), flag_id=flag.pk) == flag
    look = one_new(before)
    assert (look.action, look.study, look.details) == ("view", study, {"page": "flag", "flag": flag.pk})

    before = events()
    stranger = actor_of(other_patient)
    for flag_id in (flag.pk, 999999):
        with pytest.raises(Http404):
            services.flag_open(actor=stranger, flag_id=flag_id)
    with pytest.raises(Http404):
        selectors.flag_get(actor=stranger, flag_id=flag.pk)
    assert events() == before


def test_another_patient_cannot_reply_or_flag_through_the_services(patient, other_patient, officer, study):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    services.flag_message(actor=actor_of(officer), flag=flag, text="Which clinic?", ask_for_info=True)
    stranger = actor_of(other_patient)
    before = events(), FlagEvent.objects.count()
    with pytest.raises(Http404):
        services.flag_reply(actor=stranger, flag=flag, text="not mine")
    with pytest.raises(Http404):
        services.flag_create(actor=stranger, study_id=study.pk, category="not_my_scan", description="x")
    assert (events(), FlagEvent.objects.count()) == before
    assert list(selectors.flag_list(actor=stranger)) == []


def test_the_reply_records_one_modify_under_the_patient(patient, officer, study):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    services.flag_message(actor=actor_of(officer), flag=flag, text="Which clinic?", ask_for_info=True)
    before = events()
    services.flag_reply(actor=actor_of(patient), flag=flag, text="North clinic")
    look = one_new(before)
    assert (look.action, look.actor_name, look.details) == ("modify", "Patient (self)", {"page": "flag_reply", "flag": flag.pk})
    assert flag.events.get(kind=FlagEvent.Kind.MESSAGE_FROM_PATIENT).actor == patient


def test_a_new_report_records_one_modify_and_names_the_patient_on_its_timeline(patient, study):
    before = events()
    flag = raise_flag(patient, study)
    look = one_new(before)
    assert (look.action, look.study, look.details) == ("modify", study, {"page": "flag_new", "flag": flag.pk})
    assert flag.raised_by == patient and flag.events.get().actor == patient


# --- The officer's flag page -----------------------------------------------------------------


def test_officer_flag_page_records_one_look_under_the_officer_as_a_privacy_investigation(officer, patient, study, event):
    flag = services.flag_create(actor=actor_of(patient), access_event_id=event.pk, category="unfamiliar_accessor", description="Who?")
    services.flag_claim(actor=actor_of(officer), flag=flag)
    actor = actor_of(officer, ip="203.0.113.9", user_agent="Officer browser")
    before = events()
    ctx = services.flag_office_open(actor=actor, flag_id=flag.pk)
    look = one_new(before)
    assert ctx.flag == flag and ctx.study == study and ctx.event == event
    assert (look.actor_type, look.actor_name, look.actor_ref, look.purpose, look.action) == (
        "privacy_office", officer.public_name, f"user:{officer.pk}", "privacy_investigation", "view")
    assert (look.organization, look.role, look.ip, look.user_agent, look.study, look.details) == (
        settings.HOSPITAL_NAME, "Privacy officer", "203.0.113.9", "Officer browser", study, {"page": "flag", "flag": flag.pk})
    assert look.patient == patient.patient


def test_officer_flag_page_of_a_flag_not_held_is_404_and_records_nothing(officer, second_officer, patient, study):
    flag = raise_flag(patient, study)
    before = events()
    with pytest.raises(Http404):
        services.flag_office_open(actor=actor_of(officer), flag_id=flag.pk)  # in the queue, not held
    assert events() == before
    services.flag_claim(actor=actor_of(second_officer), flag=flag)
    before = events()
    for flag_id in (flag.pk, 999999):
        with pytest.raises(Http404):
            services.flag_office_open(actor=actor_of(officer), flag_id=flag_id)
    with pytest.raises(Http404):
        services.flag_office_open(actor=actor_of(patient), flag_id=flag.pk)
    assert events() == before


def test_officer_reaches_only_the_patient_of_the_flag(officer, patient, other_patient, study):
    """The context is read as the officer narrowed to the flag's patient: another patient's study
    is out of reach even for the officer holding a flag."""
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    narrowed = actor_of(officer).investigating(patient.patient.pk)
    assert selectors.flag_context(actor=narrowed, flag=flag).study == study
    elsewhere = actor_of(officer).investigating(other_patient.patient.pk)
    with pytest.raises(Http404):
        selectors.flag_context(actor=elsewhere, flag=flag)
    with pytest.raises(Http404):
        selectors.flag_context(actor=actor_of(officer), flag=flag)  # not narrowed: reaches no one


def test_officer_views_write_their_look_once_per_page(officer_client: Client, officer, patient, study):
    flag = raise_flag(patient, study)
    officer_client.post(reverse("flags-claim", args=[flag.pk]))
    before = events()
    assert officer_client.get(reverse("flags-officer-detail", args=[flag.pk])).status_code == 200
    look = one_new(before)
    assert (look.actor_name, look.purpose) == (officer.public_name, "privacy_investigation")
    before = events()
    for url in (reverse("flags-queue"), reverse("flags-dashboard")):
        assert officer_client.get(url).status_code == 200
    assert events() == before  # metadata only: nothing of a patient's is read


def test_patient_pages_write_one_event_each(client: Client, patient, study):
    login_verified(client, patient)
    flag = raise_flag(patient, study)
    for url, page in ((reverse("flags-mine"), "flags_mine"), (reverse("flags-detail", args=[flag.pk]), "flag"),
                      (f"{reverse('flags-new')}?study={study.pk}", "flag_new")):
        before = events()
        assert client.get(url).status_code == 200, url
        assert one_new(before).details["page"] == page
    before = events()
    assert client.get(reverse("flags-new")).status_code == 200  # the pick page shows no record
    assert events() == before


# --- Services refuse the wrong actor ------------------------------------------------------------


def test_office_services_refuse_a_patient_and_an_officer_not_holding(officer, second_officer, patient, study):
    flag = raise_flag(patient, study)
    with pytest.raises(PermissionDenied):
        services.flag_claim(actor=actor_of(patient), flag=flag)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    for call, kwargs in ((services.flag_note, {"text": "x"}), (services.flag_message, {"text": "x"}),
                         (services.flag_transition, {"to": "needs_info"}), (services.flag_integrity_recheck, {})):
        with pytest.raises(PermissionDenied):
            call(actor=actor_of(second_officer), flag=flag, **kwargs)
    assert flag.events.count() == 3  # created, claimed, status


def test_notices_mark_read_touches_only_the_patients_own(patient, other_patient, study):
    raise_flag(patient, study)
    raise_flag(other_patient, make_study(other_patient.patient))
    assert services.notices_mark_read(actor=actor_of(patient)) == 1
    assert Notice.objects.filter(read_at__isnull=True).get().patient == other_patient.patient
    with pytest.raises(PermissionDenied):
        services.notices_mark_read(actor=Actor.system("Integrity check"))


# --- Flags reads consent directly (views writing nothing: tests/test_layers.py) -----------------


def test_flags_selectors_read_consent_directly_and_own_no_user_helpers():
    source = (ROOT / "flags" / "selectors.py").read_text()
    assert "importlib" not in source and "patient_for_user" not in source and "patient__user" not in source
    assert "from consent import selectors" in source
    services_source = (ROOT / "flags" / "services.py").read_text()
    assert "record_portal_access" not in services_source
    # The study's status is imaging's to write: flags asks its service.
    assert "study.save(" not in services_source and "study_status_set(actor=" in services_source

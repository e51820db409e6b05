"""The patient's side of flags: reporting a study or an access, "My reports", replying.

Each view's failure cases (STYLE.md): anonymous → login; password-only → second-factor step;
another patient's object → 404 like a missing one; wrong method → 405. Plus the feature: the
study shows "under review", the patient is notified in the portal and by email, one access
event per page.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from audit.models import AccessEvent
from flags import services
from flags.models import Flag, FlagEvent
from imaging.models import Study
from notices.models import Notice
from tests.conftest import login_password_only, login_verified
from tests.factories import actor_of
from tests.flags.conftest import make_event, make_study

pytestmark = pytest.mark.django_db

DESCRIPTION = "I have never had a CT of my chest; my left knee was scanned instead."


def new_url(**params) -> str:
    key, value = next(iter(params.items()))
    return f"{reverse('flags-new')}?{key}={value}"


def raise_flag(patient, study, **kwargs) -> Flag:
    return services.flag_create(
        actor=actor_of(patient), study_id=study.pk, category=kwargs.get("category", "not_my_scan"),
        description=kwargs.get("description", DESCRIPTION),
    )


def patient_urls(flag: Flag, study: Study) -> list[str]:
    return [
        reverse("flags-mine"),
        new_url(study=study.pk),
        reverse("flags-detail", args=[flag.pk]),
    ]


def test_anonymous_is_sent_to_login(client: Client, patient, study):
    flag = raise_flag(patient, study)
    for url in patient_urls(flag, study):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_password_only_session_is_sent_to_the_second_factor(client: Client, unverified_user):
    study = make_study(unverified_user.patient)
    flag = raise_flag(unverified_user, study)
    login_password_only(client, unverified_user)
    for url in [*patient_urls(flag, study), reverse("flags-reply", args=[flag.pk])]:
        response = client.get(url) if "reply" not in url else client.post(url, {"text": "x"})
        assert response.status_code == 302, url
        assert response["Location"].startswith("/account/2fa/"), url


def test_another_patients_study_event_and_flag_are_404_like_missing_ones(client: Client, patient, other_patient):
    theirs = make_study(other_patient.patient)
    their_event = make_event(other_patient.patient, study=theirs)
    their_flag = raise_flag(other_patient, theirs)
    login_verified(client, patient)
    before = AccessEvent.objects.count()
    for url in [
        new_url(study=theirs.pk), new_url(event=their_event.pk), new_url(study=999999), new_url(event=999999),
        new_url(study="abc"), reverse("flags-detail", args=[their_flag.pk]), reverse("flags-detail", args=[999999]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(new_url(study=theirs.pk), {"category": "not_my_scan", "description": "x"}).status_code == 404
    assert client.post(reverse("flags-reply", args=[their_flag.pk]), {"text": "x"}).status_code == 404
    assert AccessEvent.objects.count() == before
    assert Flag.objects.filter(patient=patient.patient).count() == 0


def test_wrong_method_is_405(patient_client: Client, patient, study):
    flag = raise_flag(patient, study)
    assert patient_client.put(new_url(study=study.pk)).status_code == 405
    assert patient_client.post(reverse("flags-mine")).status_code == 405
    assert patient_client.post(reverse("flags-detail", args=[flag.pk])).status_code == 405
    assert patient_client.get(reverse("flags-reply", args=[flag.pk])).status_code == 405
    assert patient_client.get(reverse("flags-notices-read")).status_code == 405


def test_patient_flags_a_study_which_then_shows_under_review(patient_client: Client, patient, study, django_capture_on_commit_callbacks):
    response = patient_client.get(new_url(study=study.pk))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    assert "I never had this scan" in response.content.decode()
    assert "I did not agree to this AI or research use" not in response.content.decode()  # not a study reason
    with django_capture_on_commit_callbacks(execute=True):
        response = patient_client.post(new_url(study=study.pk), {"category": "not_my_scan", "description": DESCRIPTION})
    flag = Flag.objects.get(patient=patient.patient)
    assert response.status_code == 302 and response["Location"] == reverse("flags-detail", args=[flag.pk])
    assert (flag.study, flag.access_event, flag.status, flag.raised_by) == (study, None, "open", patient)
    assert flag.events.get().kind == FlagEvent.Kind.CREATED
    study.refresh_from_db()
    assert study.status == Study.Status.UNDER_REVIEW
    home = patient_client.get(reverse("home")).content.decode()
    assert "Under review" in home
    # Notified in the portal and by email, with no clinical detail in the email.
    assert Notice.objects.filter(patient=patient.patient, key=f"flag:{flag.pk}").count() == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [patient.email]
    body = mail.outbox[0].body
    assert "CT chest" not in body and DESCRIPTION not in body and "knee" not in body
    # Each page is one access event for the patient's own log.
    assert AccessEvent.objects.filter(patient=patient.patient, details__page="flag_new").count() == 2


def test_patient_flags_an_access_event(patient_client: Client, patient, event):
    response = patient_client.post(new_url(event=event.pk), {"category": "unfamiliar_accessor", "description": "Who is Acme?"})
    assert response.status_code == 302
    flag = Flag.objects.get(patient=patient.patient)
    assert flag.access_event == event and flag.study is None
    mine = patient_client.get(reverse("flags-mine")).content.decode()
    assert "Acme AI Ltd" in mine and "Received" in mine


def test_category_must_fit_the_target_and_posted_status_is_ignored(patient_client: Client, patient, event, study):
    response = patient_client.post(new_url(event=event.pk), {"category": "not_my_scan", "description": "x"})
    assert response.status_code == 400
    assert not Flag.objects.exists()
    patient_client.post(
        new_url(study=study.pk),
        {"category": "wrong_details", "description": "Wrong date", "status": "resolved", "patient": 999, "assignee": 1},
    )
    flag = Flag.objects.get()
    assert flag.status == "open" and flag.assignee is None and flag.patient == patient.patient


def test_a_second_open_flag_on_the_same_study_is_refused(patient_client: Client, patient, study):
    raise_flag(patient, study)
    response = patient_client.post(new_url(study=study.pk), {"category": "other", "description": "again"})
    assert response.status_code == 400
    assert "already reported" in response.content.decode()
    assert Flag.objects.count() == 1


def test_description_is_required_and_text_only(patient_client: Client, study):
    response = patient_client.post(new_url(study=study.pk), {"category": "other", "description": ""})
    assert response.status_code == 400
    assert not Flag.objects.exists()
    response = patient_client.post(new_url(study=study.pk), {"category": "other", "description": "x" * 4001})
    assert response.status_code == 400


def test_patient_sees_messages_and_outcome_but_never_internal_notes(patient_client: Client, patient, study, officer):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    services.flag_note(actor=actor_of(officer), flag=flag, text="INTERNAL: check vendor contract 42")
    services.flag_message(actor=actor_of(officer), flag=flag, text="Which clinic did you visit?", ask_for_info=True)
    page = patient_client.get(reverse("flags-detail", args=[flag.pk])).content.decode()
    assert "Which clinic did you visit?" in page
    assert "INTERNAL" not in page and "contract 42" not in page
    assert "needs more information" in page  # the reply form
    services.flag_transition(actor=actor_of(officer), flag=flag, to="resolved", resolution="The scan was filed under the wrong record and has been moved.")
    page = patient_client.get(reverse("flags-detail", args=[flag.pk])).content.decode()
    assert "filed under the wrong record" in page and "Outcome" in page
    assert "INTERNAL" not in patient_client.get(reverse("flags-mine")).content.decode()


def test_patient_replies_only_when_asked(patient_client: Client, patient, study, officer, django_capture_on_commit_callbacks):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    url = reverse("flags-reply", args=[flag.pk])
    patient_client.post(url, {"text": "unasked"})
    assert not flag.events.filter(kind=FlagEvent.Kind.MESSAGE_FROM_PATIENT).exists()
    services.flag_message(actor=actor_of(officer), flag=flag, text="When was your appointment?", ask_for_info=True)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = patient_client.post(url, {"text": "In May, at the north clinic."})
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.status == "in_review"
    assert flag.events.get(kind=FlagEvent.Kind.MESSAGE_FROM_PATIENT).text == "In May, at the north clinic."
    assert len(mail.outbox) == 1 and "north clinic" not in mail.outbox[0].body


def test_notices_can_be_marked_read(patient_client: Client, patient, study):
    raise_flag(patient, study)
    page = patient_client.get(reverse("flags-mine")).content.decode()
    assert "1 new" in page
    patient_client.post(reverse("flags-notices-read"))
    assert not Notice.objects.filter(patient=patient.patient, read_at__isnull=True).exists()


def test_pick_page_without_a_target(patient_client: Client):
    response = patient_client.get(reverse("flags-new"))
    assert response.status_code == 200
    assert "Start from the thing that looks wrong" in response.content.decode()


def test_officer_cannot_flag_or_see_patient_pages(client: Client, officer, patient, study):
    login_verified(client, officer)
    assert client.get(new_url(study=study.pk)).status_code == 404
    flag = raise_flag(patient, study)
    assert client.get(reverse("flags-detail", args=[flag.pk])).status_code == 404

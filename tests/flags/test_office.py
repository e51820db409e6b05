"""The privacy office: officer-only pages, holding a flag to see patient data (each look an
access event the patient sees), the state machine, deadlines, notifications, integrity alerts,
the dashboard."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AccessEvent
from core.actor import Actor
from flags import selectors, services
from flags.models import Flag, FlagEvent
from flags.tasks import flags_from_integrity_alerts as integrity_task
from imaging.models import IntegrityAlert, Study
from notices.models import Notice
from tests.conftest import login_password_only, login_verified
from tests.factories import actor_of
from tests.flags.conftest import make_study
from tests.flags.test_patient import raise_flag

pytestmark = pytest.mark.django_db


def officer_get_urls(flag: Flag) -> list[str]:
    return [reverse("flags-queue"), reverse("flags-dashboard"), reverse("flags-officer-detail", args=[flag.pk])]


def officer_post_urls(flag: Flag) -> list[str]:
    return [
        reverse(name, args=[flag.pk])
        for name in ("flags-claim", "flags-assign", "flags-note", "flags-message", "flags-status", "flags-integrity-recheck", "flags-incident")
    ]


def privacy_events(patient_record):
    return AccessEvent.objects.filter(patient=patient_record, actor_type="privacy_office")


# --- Who may see what --------------------------------------------------------------------------


def test_patients_get_404_on_every_officer_page(patient_client: Client, patient, study):
    flag = raise_flag(patient, study)
    for url in officer_get_urls(flag):
        assert patient_client.get(url).status_code == 404, url
    for url in officer_post_urls(flag):
        assert patient_client.post(url, {"text": "x", "status": "resolved", "resolution": "x"}).status_code == 404, url
    flag.refresh_from_db()
    assert flag.assignee is None and flag.status == "open" and flag.events.count() == 1


def test_anonymous_and_password_only_officers_are_stopped(client: Client, officer, patient, study):
    flag = raise_flag(patient, study)
    for url in officer_get_urls(flag):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    login_password_only(client, officer)
    for url in officer_get_urls(flag):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/account/2fa/"), url


def test_wrong_method_is_405(officer_client: Client, officer, patient, study):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    for url in officer_get_urls(flag):
        assert officer_client.post(url).status_code == 405, url
    for url in officer_post_urls(flag):
        assert officer_client.get(url).status_code == 405, url


def test_officer_sees_patient_data_only_through_a_flag_they_hold(officer_client: Client, officer, patient, study):
    flag = raise_flag(patient, study)
    url = reverse("flags-officer-detail", args=[flag.pk])
    # Queued but not held: the queue shows metadata only, the flag page is a 404.
    queue = officer_client.get(reverse("flags-queue")).content.decode()
    assert f"#{flag.pk}" in queue
    assert patient.patient.name not in queue and "CT chest" not in queue and "knee" not in queue
    assert officer_client.get(url).status_code == 404
    assert not privacy_events(patient.patient).exists()
    # Claimed: the page shows the context, and the look is one event in the patient's log.
    response = officer_client.post(reverse("flags-claim", args=[flag.pk]))
    assert response.status_code == 302 and response["Location"] == url
    page = officer_client.get(url)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"] or "max-age=0" in page["Cache-Control"]
    body = page.content.decode()
    assert patient.patient.name in body and "CT chest" in body and "left knee" in body
    (look,) = privacy_events(patient.patient)
    assert (look.purpose, look.action, look.study, look.actor_name) == ("privacy_investigation", "view", study, officer.public_name)
    assert look.details == {"page": "flag", "flag": flag.pk}


def test_another_officers_flag_is_404(client: Client, officer, second_officer, patient, study):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(second_officer), flag=flag)
    login_verified(client, officer)
    assert client.get(reverse("flags-officer-detail", args=[flag.pk])).status_code == 404
    for url in officer_post_urls(flag):
        assert client.post(url, {"text": "x", "assignee": officer.pk}).status_code == 404, url
    flag.refresh_from_db()
    assert flag.assignee == second_officer
    assert not privacy_events(patient.patient).exists()


def test_handing_a_flag_over_removes_access(officer_client: Client, officer, second_officer, patient, study):
    flag = raise_flag(patient, study)
    officer_client.post(reverse("flags-claim", args=[flag.pk]))
    response = officer_client.post(reverse("flags-assign", args=[flag.pk]), {"assignee": second_officer.pk})
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.assignee == second_officer
    assert flag.events.filter(kind=FlagEvent.Kind.ASSIGNED).exists()
    assert officer_client.get(reverse("flags-officer-detail", args=[flag.pk])).status_code == 404


def test_assign_refuses_a_patient_as_assignee(officer, patient, study):
    flag = raise_flag(patient, study)
    with pytest.raises(ValidationError):
        services.flag_assign(actor=actor_of(officer), flag=flag, assignee=patient)


def test_flag_page_context_accessors_other_accesses_and_consent(officer_client: Client, officer, patient, study, event):
    other_study = make_study(patient.patient, description="MR knee")
    from tests.flags.conftest import make_event

    make_event(patient.patient, study=other_study, when=timezone.now() - dt.timedelta(days=40))  # same accessor
    make_event(patient.patient, study=other_study, organization="Other Org", actor_ref="other")  # someone else
    flag = services.flag_create(actor=actor_of(patient), access_event_id=event.pk, category="unfamiliar_accessor", description="Who?")
    services.flag_claim(actor=actor_of(officer), flag=flag)
    ctx = selectors.flag_context(actor=actor_of(officer).investigating(patient.patient.pk), flag=flag)
    assert ctx.study == study
    assert [e.study for e in ctx.accessor_history] == [other_study]
    assert event in ctx.study_history
    body = officer_client.get(reverse("flags-officer-detail", args=[flag.pk])).content.decode()
    assert "The accessor&#x27;s other accesses" in body or "The accessor's other accesses" in body
    assert "The patient&#x27;s choices as they stood" in body or "choices as they stood" in body


# --- State machine -----------------------------------------------------------------------------

STATUSES = list(Flag.Status.values)


@pytest.mark.parametrize(("start", "to"), list(itertools.product(STATUSES, STATUSES)))
def test_state_machine_allows_exactly_the_table(officer, patient, start, to):
    study = make_study(patient.patient)
    flag = raise_flag(patient, study)
    flag.assignee = officer
    flag.status = start
    flag.save()
    allowed = to in services.TRANSITIONS[start]
    if allowed:
        services.flag_transition(actor=actor_of(officer), flag=flag, to=to, resolution="Outcome text")
        flag.refresh_from_db()
        assert flag.status == to
    else:
        with pytest.raises(ValidationError):
            services.flag_transition(actor=actor_of(officer), flag=flag, to=to, resolution="Outcome text")
        flag.refresh_from_db()
        assert flag.status == start


def test_closing_needs_a_resolution_and_study_is_available_again_only_when_all_flags_close(officer, patient, study, event):
    first = raise_flag(patient, study)
    second = services.flag_create(actor=actor_of(patient), access_event_id=event.pk, category="other", description="x")
    third = raise_flag(patient, make_study(patient.patient))
    # A flag on an access event does not hold its study under review by itself.
    for flag in (first, second, third):
        services.flag_claim(actor=actor_of(officer), flag=flag)
    with pytest.raises(ValidationError):
        services.flag_transition(actor=actor_of(officer), flag=first, to="resolved", resolution="  ")
    study.refresh_from_db()
    assert study.status == Study.Status.UNDER_REVIEW
    services.flag_transition(actor=actor_of(officer), flag=first, to="dismissed", resolution="We checked: this is your scan.")
    study.refresh_from_db()
    assert study.status == Study.Status.AVAILABLE
    first.refresh_from_db()
    assert first.closed_at is not None and first.resolution == "We checked: this is your scan."


def test_status_view_rejects_a_transition_outside_the_table(officer_client: Client, officer, patient, study):
    flag = raise_flag(patient, study)
    officer_client.post(reverse("flags-claim", args=[flag.pk]))  # open -> in_review
    services.flag_transition(actor=actor_of(officer), flag=flag, to="resolved", resolution="Done")
    response = officer_client.post(reverse("flags-status", args=[flag.pk]), {"status": "in_review"}, follow=True)
    assert "cannot go from" in response.content.decode()
    flag.refresh_from_db()
    assert flag.status == "resolved"


def test_only_the_holder_may_change_status(officer, second_officer, patient, study):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    with pytest.raises(PermissionDenied):
        services.flag_transition(actor=actor_of(second_officer), flag=flag, to="needs_info")
    with pytest.raises(PermissionDenied):
        services.flag_claim(actor=actor_of(second_officer), flag=flag)
    with pytest.raises(PermissionDenied):
        services.flag_transition(actor=actor_of(patient), flag=flag, to="dismissed", resolution="x")


# --- Deadlines ---------------------------------------------------------------------------------


def test_due_date_follows_the_configured_deadline_and_overdue_is_highlighted(settings, officer_client: Client, patient, study):
    settings.FLAGS_DEADLINE_DAYS = 10
    flag = raise_flag(patient, study)
    assert abs((flag.due_at - flag.created_at) - dt.timedelta(days=10)) < dt.timedelta(seconds=1)
    assert not flag.is_overdue
    late_study = make_study(patient.patient)
    late = raise_flag(patient, late_study)
    Flag.objects.filter(pk=late.pk).update(created_at=timezone.now() - dt.timedelta(days=12), due_at=timezone.now() - dt.timedelta(days=2))
    page = officer_client.get(reverse("flags-queue")).content.decode()
    assert page.count("flag-overdue") == 1 and "Overdue" in page
    overdue_only = officer_client.get(reverse("flags-queue"), {"overdue": "on"}).content.decode()
    assert f"#{late.pk}" in overdue_only and f"#{flag.pk}<" not in overdue_only


def test_queue_filters_and_sorting(officer_client: Client, officer, patient, study, event):
    a = raise_flag(patient, study)
    b = services.flag_create(actor=actor_of(patient), access_event_id=event.pk, category="unfamiliar_accessor", description="x")
    services.flag_claim(actor=actor_of(officer), flag=b)
    qs = lambda **kw: list(selectors.flag_queue(actor=actor_of(officer), filters=selectors.QueueFilters(**kw)))  # noqa: E731
    assert qs(category="unfamiliar_accessor") == [b]
    assert qs(assignee="me") == [b]
    assert qs(assignee="none") == [a]
    assert qs(status="in_review") == [b]
    assert qs(older_than_days=7) == []
    assert qs(sort="newest") == [b, a]
    assert qs(sort="oldest") == [a, b]
    response = officer_client.get(reverse("flags-queue"), {"category": "unfamiliar_accessor", "sort": "newest"})
    assert response.status_code == 200
    assert f"#{b.pk}" in response.content.decode() and f"Claim<span class=\"visually-hidden\"> #{a.pk}" not in response.content.decode()


# --- Notifications -------------------------------------------------------------------------------


def test_patient_is_notified_of_every_change_without_clinical_detail(officer, patient, study, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        flag = raise_flag(patient, study)
    with django_capture_on_commit_callbacks(execute=True):
        services.flag_claim(actor=actor_of(officer), flag=flag)
    with django_capture_on_commit_callbacks(execute=True):
        services.flag_note(actor=actor_of(officer), flag=flag, text="internal")  # not a change the patient sees
    with django_capture_on_commit_callbacks(execute=True):
        services.flag_message(actor=actor_of(officer), flag=flag, text="Your CT chest of 14 March: which clinic?", ask_for_info=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.flag_transition(actor=actor_of(officer), flag=flag, to="resolved", resolution="Your CT chest was misfiled.")
    notices = Notice.objects.filter(patient=patient.patient, key=f"flag:{flag.pk}")
    assert notices.count() == 4  # received, review started, info requested, closed
    assert len(mail.outbox) == 4
    for message in mail.outbox:
        assert message.to == [patient.email]
        assert "CT chest" not in message.body and "clinic" not in message.body and "misfiled" not in message.body
        assert "My reports" in message.body


# --- Integrity ---------------------------------------------------------------------------------


def test_integrity_alerts_arrive_in_the_queue_once(officer_client: Client, patient):
    from imaging.services.integrity import instances_verify

    study = make_study(patient.patient, with_instance=True)
    result = instances_verify(study=study)
    assert result.missing == 1
    alert = IntegrityAlert.objects.get()
    assert integrity_task() == 1
    assert integrity_task() == 0  # idempotent
    flag = Flag.objects.get(integrity_alert=alert)
    assert (flag.category, flag.status, flag.study, flag.patient) == ("suspected_tampering", "open", study, patient.patient)
    study.refresh_from_db()
    assert study.status == Study.Status.UNDER_REVIEW
    assert f"#{flag.pk}" in officer_client.get(reverse("flags-queue")).content.decode()
    assert Flag.objects.count() == 1
    # Not a patient report: not in "My reports", no notice.
    assert list(selectors.flag_list(actor=actor_of(patient))) == []
    assert not Notice.objects.exists()


def test_queue_load_writes_nothing_the_periodic_service_brings_alerts_in(officer_client: Client, patient):
    """GET never writes: the queue only reads; the periodic service makes one flag per new alert,
    once."""
    from imaging.services.integrity import instances_verify

    study = make_study(patient.patient, with_instance=True)
    other = make_study(patient.patient, with_instance=True)
    instances_verify(study=study)
    instances_verify(study=other)
    assert IntegrityAlert.objects.count() == 2
    before = (Flag.objects.count(), FlagEvent.objects.count(), AccessEvent.objects.count(), Study.objects.filter(status="under_review").count())
    assert officer_client.get(reverse("flags-queue")).status_code == 200
    assert (Flag.objects.count(), FlagEvent.objects.count(), AccessEvent.objects.count(), Study.objects.filter(status="under_review").count()) == before == (0, 0, 0, 0)
    system = Actor.system("Integrity check")
    assert services.flags_from_integrity_alerts(actor=system) == 2
    assert services.flags_from_integrity_alerts(actor=system) == 0  # idempotent
    assert sorted(Flag.objects.values_list("study_id", flat=True)) == sorted([study.pk, other.pk])
    assert set(FlagEvent.objects.values_list("kind", "actor_id")) == {("created", None)}
    assert not AccessEvent.objects.exists()  # no one looked at a patient's data
    page = officer_client.get(reverse("flags-queue")).content.decode()
    assert all(f"#{flag.pk}" in page for flag in Flag.objects.all())


def test_integrity_recheck_is_logged_for_the_patient(officer_client: Client, officer, patient):
    study = make_study(patient.patient, with_instance=True)
    flag = raise_flag(patient, study, category="suspected_tampering")
    services.flag_claim(actor=actor_of(officer), flag=flag)
    response = officer_client.post(reverse("flags-integrity-recheck", args=[flag.pk]), follow=True)
    assert "do not match their fingerprint or are missing" in response.content.decode()
    recheck = flag.events.get(kind=FlagEvent.Kind.INTEGRITY_RECHECK)
    assert recheck.details == {"checked": 1, "ok": 0, "mismatched": 0, "missing": 1}
    events = privacy_events(patient.patient)
    assert events.filter(action="query", details__integrity_recheck=True).count() == 1
    assert IntegrityAlert.objects.filter(instance__series__study=study).count() == 1


def test_closing_an_integrity_flag_resolves_its_alert(officer, patient):
    from imaging.services.integrity import instances_verify

    study = make_study(patient.patient, with_instance=True)
    instances_verify(study=study)
    services.flags_from_integrity_alerts(actor=Actor.system("Integrity check"))
    flag = Flag.objects.get()
    services.flag_claim(actor=actor_of(officer), flag=flag)
    with pytest.raises(ValidationError):
        services.flag_message(actor=actor_of(officer), flag=flag, text="hello")  # no patient report to answer
    services.flag_transition(actor=actor_of(officer), flag=flag, to="resolved", resolution="File restored from backup.")
    assert IntegrityAlert.objects.get().resolved_at is not None


# --- Dashboard -----------------------------------------------------------------------------------


def test_dashboard_counts(officer_client: Client, officer, patient):
    flags = [raise_flag(patient, make_study(patient.patient)) for _ in range(3)]
    for flag in flags[:2]:
        services.flag_claim(actor=actor_of(officer), flag=flag)
    Flag.objects.filter(pk=flags[0].pk).update(created_at=timezone.now() - dt.timedelta(days=4))
    services.flag_transition(actor=actor_of(officer), flag=flags[0], to="resolved", resolution="x")
    Flag.objects.filter(pk=flags[1].pk).update(created_at=timezone.now() - dt.timedelta(days=2))
    services.flag_transition(actor=actor_of(officer), flag=flags[1], to="dismissed", resolution="x")
    Flag.objects.filter(pk=flags[2].pk).update(due_at=timezone.now() - dt.timedelta(days=1))
    data = selectors.dashboard(actor=actor_of(officer))
    assert data.open_total == 1 and data.overdue == 1
    assert data.median_days_to_close == 3.0
    assert dict(data.open_by_category)["I never had this scan"] == 1
    assert sum(w["opened"] for w in data.weeks) == 3 and sum(w["closed"] for w in data.weeks) == 2
    page = officer_client.get(reverse("flags-dashboard")).content.decode()
    assert "<svg" in page and 'id="chart-table"' in page and "3.0 days" in page


def test_consent_shown_is_the_state_at_the_time_of_the_access(officer_client: Client, officer, patient, event):
    """Granted 10 days ago, refused yesterday; the access was 3 days ago: the page says granted."""
    from consent.services import _write_decision, consent_policy_publish

    policy = consent_policy_publish(version=1, text="Policy text", effective_from=timezone.now() - dt.timedelta(days=30))
    for days, decision in ((10, "granted"), (1, "refused")):
        _write_decision(
            patient=patient.patient, scope="ai_training", decision=decision, study=None, policy=policy, actor=patient,
            channel="portal", kind="change", recorded_by="patient", decided_at=timezone.now() - dt.timedelta(days=days),
        )
    flag = services.flag_create(actor=actor_of(patient), access_event_id=event.pk, category="unexpected_ai_or_research_use", description="x")
    services.flag_claim(actor=actor_of(officer), flag=flag)
    ctx = selectors.flag_context(actor=actor_of(officer).investigating(patient.patient.pk), flag=flag)
    rows = {row.scope: row for row in ctx.consent}
    assert ctx.consent_when == event.occurred_at
    assert rows["ai_training"].state["decision"] == "granted"
    assert rows["research"].state is None
    body = officer_client.get(reverse("flags-officer-detail", args=[flag.pk])).content.decode()
    section = body[body.index("consent-heading"):body.index("study-heading")]
    assert "Granted" in section and "default" in section, section


def test_the_office_reads_waiting_for_the_patient_where_the_patient_reads_waiting_for_your_reply(
    officer, officer_client: Client, client: Client, patient, study
):
    flag = raise_flag(patient, study)
    services.flag_claim(actor=actor_of(officer), flag=flag)
    services.flag_transition(actor=actor_of(officer), flag=flag, to="needs_info")
    for url in (reverse("flags-queue"), reverse("flags-officer-detail", args=[flag.pk])):
        page = officer_client.get(url).content.decode()
        assert "Waiting for the patient" in page and "Waiting for your reply" not in page, url
    login_verified(client, patient)
    page = client.get(reverse("flags-detail", args=[flag.pk])).content.decode()
    assert "Waiting for your reply" in page and "Waiting for the patient" not in page


def test_officers_are_named_to_each_other_by_name_never_by_email(officer_client: Client, officer, second_officer,
                                                                 patient, study):
    # The hand-over list, the queue's "Held by" column and filter, the confirmation and the flag's
    # history showed officers' email addresses.
    second_officer.display_name = "Officer Ada Lowe"
    second_officer.save()
    flag = raise_flag(patient, study)
    officer_client.post(reverse("flags-claim", args=[flag.pk]))
    detail = officer_client.get(reverse("flags-officer-detail", args=[flag.pk])).content.decode()
    assert "Officer Ada Lowe" in detail and second_officer.email not in detail
    response = officer_client.post(reverse("flags-assign", args=[flag.pk]), {"assignee": second_officer.pk}, follow=True)
    page = response.content.decode()
    assert "held by Officer Ada Lowe" in page
    queue = officer_client.get(reverse("flags-queue")).content.decode()
    assert "Officer Ada Lowe" in queue
    assert second_officer.email not in page + queue
    assert flag.events.get(kind=FlagEvent.Kind.ASSIGNED).details == {"from": officer.pk, "to": second_officer.pk}

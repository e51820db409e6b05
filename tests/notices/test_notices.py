"""The notification centre (issue 19, item 2): who writes notices, who reads them, the bell's
count, and marking them read by POST."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.notifications import notify_events
from consent.services import consent_policy_publish
from core.actor import Actor
from flags import services as flag_services
from notices import selectors, services
from notices.models import Notice
from tests.audit.conftest import clinician_view
from tests.conftest import login_password_only, login_verified
from tests.factories import actor_of
from tests.flags.conftest import make_study

pytestmark = pytest.mark.django_db


def _add(patient_user, kind=Notice.Kind.EXPORT_READY, key="export:1", **extra) -> Notice | None:
    fields = {"subject": "Your export is ready to download", "link": "/exports/1/", **extra}
    return services.notice_add(patient_id=patient_user.patient.pk, kind=kind, key=key, **fields)


# --- Writers: each app's service tells the patient -------------------------------------------------


def test_a_report_update_is_a_notice_linking_to_the_report(patient):
    study = make_study(patient.patient)
    flag = flag_services.flag_create(actor=actor_of(patient), category="not_my_scan", description="", study_id=study.pk)
    notice = Notice.objects.get(patient=patient.patient)
    assert (notice.kind, notice.link) == (Notice.Kind.REPORT_UPDATE, f"/flags/{flag.pk}/")


def test_a_new_organisation_is_a_notice_once_whatever_the_email_preferences(patient):
    from audit.models import NotificationPreference

    NotificationPreference.objects.create(user=patient, new_organization=False)
    event = clinician_view(patient.patient, organization="Oncology Partners")
    notify_events([event.pk])
    notify_events([event.pk])  # a retried task
    notice = Notice.objects.get(patient=patient.patient)
    assert (notice.kind, notice.link) == (Notice.Kind.NEW_ORGANIZATION, "/access-log/")
    assert "Oncology" not in notice.subject + notice.body  # like the email: no names


def test_a_new_consent_policy_tells_every_patient_with_an_account_once(patient, other_patient):
    consent_policy_publish(version=90, text="Policy text.")
    assert set(Notice.objects.filter(kind=Notice.Kind.CONSENT_POLICY).values_list("patient_id", flat=True)) == {
        patient.patient.pk, other_patient.patient.pk,
    }
    assert Notice.objects.filter(kind=Notice.Kind.CONSENT_POLICY).first().link == "/consent/policy/"
    assert services.notices_add(
        patient_ids=[patient.patient.pk], kind=Notice.Kind.CONSENT_POLICY, key="policy:90", subject="x", link="/consent/policy/"
    ) == 0


def test_an_export_ready_notice_is_told_once(patient):
    assert _add(patient) is not None
    assert _add(patient) is None
    assert Notice.objects.count() == 1


def test_report_updates_are_told_each_time(patient):
    for _ in range(2):
        _add(patient, kind=Notice.Kind.REPORT_UPDATE, key="flag:1", link="/flags/1/")
    assert Notice.objects.count() == 2


def test_a_link_is_a_path_on_this_site(patient):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        _add(patient, link="https://evil.example/")


# --- Readers: the patient's own, and the bell's count ---------------------------------------------


def test_the_count_is_the_patients_own_unread_in_one_query(patient, other_patient):
    _add(patient, key="export:1")
    _add(patient, key="export:2")
    _add(other_patient, key="export:3")
    actor = actor_of(patient)
    services.notice_mark_read(actor=actor, notice_id=Notice.objects.filter(patient=patient.patient).first().pk)
    with CaptureQueriesContext(connection) as queries:
        assert selectors.unread_count(actor=actor) == 1
    assert len(queries) == 1


def test_staff_have_no_notices_and_cost_no_query(officer):
    staff, system = actor_of(officer), Actor.system("x")
    with CaptureQueriesContext(connection) as queries:
        assert selectors.unread_count(actor=staff) == 0
        assert selectors.unread_count(actor=system) == 0
    assert len(queries) == 0


def test_the_count_uses_the_partial_index(patient):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL plans")
    for n in range(300):
        _add(patient, key=f"export:{n}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notices_notice")
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = Notice.objects.filter(patient_id=patient.patient.pk, read_at__isnull=True).values("pk").query.sql_with_params()
        cursor.execute(f"EXPLAIN SELECT COUNT(*) FROM ({sql}) q", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "notices_unread" in plan, plan


# --- Pages ---------------------------------------------------------------------------------------


def test_the_bell_says_how_many_are_unread(patient_client, patient):
    for n in range(3):
        _add(patient, key=f"export:{n}")
    html = patient_client.get("/").content.decode()
    assert 'aria-label="Notifications: 3 unread"' in html
    assert '<span class="bell-count">3 unread</span>' in html


def test_no_bell_for_staff(officer):
    html = login_verified(Client(), officer).get(reverse("flags-queue")).content.decode()
    assert 'class="bell' not in html


def test_opening_a_notice_marks_it_read_and_goes_to_its_page(patient_client, patient):
    notice = _add(patient)
    page = patient_client.get(reverse("notices-list")).content.decode()
    assert notice.subject in page and "1 unread" in page
    response = patient_client.post(reverse("notices-read", args=[notice.pk]), {"open": "1"})
    assert response.status_code == 302 and response["Location"] == "/exports/1/"
    notice.refresh_from_db()
    assert notice.read_at is not None


def test_mark_one_and_mark_all(patient_client, patient, other_patient):
    first, second, third = (_add(patient, key=f"export:{n}") for n in range(3))
    others = _add(other_patient, key="export:9")
    assert patient_client.post(reverse("notices-read", args=[first.pk]))["Location"] == reverse("notices-list")
    assert Notice.objects.filter(patient=patient.patient, read_at__isnull=True).count() == 2
    patient_client.post(reverse("notices-read-all"))
    assert not Notice.objects.filter(patient=patient.patient, read_at__isnull=True).exists()
    others.refresh_from_db()
    assert others.read_at is None


def test_another_patients_notice_is_a_404_like_a_missing_one(patient_client, other_patient):
    others = _add(other_patient)
    assert patient_client.post(reverse("notices-read", args=[others.pk])).status_code == 404
    assert patient_client.post(reverse("notices-read", args=[987654])).status_code == 404
    others.refresh_from_db()
    assert others.read_at is None


def test_the_pages_need_a_verified_session_and_post(patient_client, patient, unverified_user):
    notice = _add(patient)
    assert Client().get(reverse("notices-list"))["Location"].startswith("/accounts/login/")
    password_only = login_password_only(Client(), unverified_user)
    assert password_only.get(reverse("notices-list"))["Location"].startswith("/account/2fa/")
    assert patient_client.get(reverse("notices-read", args=[notice.pk])).status_code == 405
    assert patient_client.get(reverse("notices-read-all")).status_code == 405


def test_an_empty_centre_says_what_will_appear(patient_client):
    page = patient_client.get(reverse("notices-list")).content.decode()
    assert "Nothing new" in page


def test_no_bell_for_an_account_without_a_patient_record(db):
    from tests.factories import AuthenticatorAppFactory, UserFactory

    user = UserFactory()  # a patient account whose record is not linked (yet)
    AuthenticatorAppFactory(user=user)
    client = login_verified(Client(), user)
    html = client.get("/").content.decode()
    assert 'class="bell' not in html  # its page would be a 404
    assert client.get(reverse("notices-list")).status_code == 404


def test_the_demo_patient_has_the_policy_notice_from_when_it_took_effect(db):
    from io import StringIO

    from django.core.management import call_command

    from consent.models import ConsentPolicy
    from portal import demo

    call_command("make_demo_data", stdout=StringIO())
    policy = ConsentPolicy.objects.order_by("-version").first()
    notices = Notice.objects.filter(patient__mrn=demo.PATIENT["mrn"])
    assert set(notices.values_list("kind", flat=True)) == {Notice.Kind.REPORT_UPDATE, Notice.Kind.CONSENT_POLICY}
    assert notices.get(kind=Notice.Kind.CONSENT_POLICY).created_at == policy.effective_from

"""Every staff read is logged, the admin included (docs/security.md §19): every page of every
ModelAdmin registered in the admin (its list, each row's page, its search, history and delete
confirmation), opened by a superuser, either shows no patient's name, MRN, birth date, study
description or study UID, or writes an access event for that patient.

The walk enumerates ``admin.site._registry``: a model registered later is walked too, and must have
a row in the world below (the test says so), so it cannot slip through unexamined.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import SignInEvent, User
from accounts.services import activation_code_issue, recovery_codes_generate, service_account_create
from audit.checkpoints import checkpoint_create
from audit.models import AccessEvent
from audit.services import record_access
from consent.models import Recipient
from consent.services import _write_decision, consent_policy_publish
from exports import services as export_services
from flags import services as flag_services
from imaging.models import PacsPatientSync, PacsSyncRun, Patient
from sharing.models import Partner, Push
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory, actor_of
from tests.flags.conftest import make_study

pytestmark = pytest.mark.django_db


@dataclass
class Someone:
    record: Patient
    secrets: list[str]

    def events(self) -> int:
        return AccessEvent.objects.filter(patient=self.record).count()


def _secrets(record: Patient, studies) -> list[str]:
    born = record.birth_date
    dates = [born.isoformat(), born.strftime("%d/%m/%Y"), born.strftime("%b. %-d, %Y"), born.strftime("%B %-d, %Y"),
             born.strftime("%-d %B %Y"), born.strftime("%-d %b %Y")]
    return [record.name, record.mrn, *dates, *(s.description for s in studies), *(s.study_uid for s in studies)]


@pytest.fixture
def world() -> list[Someone]:
    """A row for every model the admin registers, each tied to patients whose data is distinctive."""
    officer = UserFactory(role=User.Role.PRIVACY_OFFICER, display_name="Olu Adeyemi")
    AuthenticatorAppFactory(user=officer)
    user = UserFactory(email="acct-7731@example.org")
    AuthenticatorAppFactory(user=user)
    record = PatientFactory(user=user, name="Quintessa Marlowe-Threnody", mrn="MRN-ADM-55821", birth_date=dt.date(1957, 11, 23))
    study = make_study(record, description="Zygomatic arch CT of Quintessa")
    unlinked = PatientFactory(user=None, name="Barnaby Ossington-Vale", mrn="MRN-ADM-60417", birth_date=dt.date(1969, 4, 2))

    record_access(
        patient=record, study=study, action="view", purpose="ai_training", actor_type="ai_vendor", actor_name="Pipeline",
        actor_ref="pipe-1", organization="Vendor Analytics", source="api", occurred_at=timezone.now() - dt.timedelta(days=2),
    )
    policy = consent_policy_publish(version=1, text="Policy one.", effective_from=timezone.now() - dt.timedelta(days=30))
    _write_decision(patient=record, scope="research", decision="granted", study=study, policy=policy, actor=user,
                    channel="portal", kind="change", recorded_by="patient")
    flag = flag_services.flag_create(actor=actor_of(user), category="not_my_scan", description=f"Not mine, {record.name}",
                                     study_id=study.pk)
    flag_services.flag_claim(actor=actor_of(officer), flag=flag)
    flag_services.flag_message(actor=actor_of(officer), flag=flag, text=f"Dear {record.name}, which clinic?", ask_for_info=True)
    flag_services.incident_confirm(
        actor=actor_of(officer), flag=flag, subject="Incident", message="A notice.",
        criteria=flag_services.IncidentCriteria(window_start=timezone.now() - dt.timedelta(days=7), window_end=timezone.now(),
                                                organization="Vendor Analytics", study=study),
    )
    export_services._create(patient=record, studies=[study], deidentify=False, requested_by_id=user.pk,
                            passphrase="alpha-bravo-charlie-delta-echo-foxtrot")
    activation_code_issue(patient=unlinked)
    recovery_codes_generate(actor=actor_of(user), user=user)
    SignInEvent.objects.create(user=user, method=SignInEvent.Method.TOTP, ip="198.51.100.7")
    UserSession.objects.create(user=user, session_key="walk-session-key-0001", ip="198.51.100.7", user_agent="Browser")
    PacsPatientSync.objects.create(patient=record, last_error=f"PACS: no such patient {record.mrn} {record.name}")
    PacsSyncRun.objects.create(patient=record, error=f"PACS: {record.name} ({record.mrn})")
    checkpoint_create()
    Recipient.objects.create(name="Walk Research Ltd", kind=Recipient.Kind.values[0], scope="research", purpose="Research.",
                             retention="Five years")
    Group.objects.create(name="Walk group")
    # A partner hospital the patient sent this study to: its admin pages show the partner only.
    partner = Partner.objects.create(name="Walk Partner Hospital", stow_url="https://pacs.walk.example/dicom-web")
    Push.objects.create(patient=record, partner=partner, total=1, error=f"Could not send {record.name}'s study").studies.set([study])
    service_account_create(name="walk-ehr", organization="Walk EHR", scopes=["audit:write"])
    return [Someone(record, _secrets(record, [study])), Someone(unlinked, _secrets(unlinked, []))]


@pytest.fixture
def superuser_client() -> Client:
    user = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True, display_name="Ada Admin")
    AuthenticatorAppFactory(user=user)
    return login_verified(Client(), user)


def _open(client: Client, url: str, people: list[Someone], *, searched: str = "") -> list[str]:
    """GET ``url``; the patient data it shows without writing that patient an access event."""
    before = [p.events() for p in people]
    response = client.get(url, {"q": searched} if searched else {})
    assert response.status_code in (200, 302, 403), f"{url} answered {response.status_code}"
    html = response.content.decode()
    if searched:
        html = html.replace(searched, "")  # the search box shows what was typed
    shown = []
    for person, events_before in zip(people, before, strict=True):
        if person.events() > events_before:
            continue  # logged for the patient: the page may show their data
        shown += [f"{url}: {s!r}" for s in person.secrets if s and s in html]
    return shown


def _url(model, view: str, *args) -> str | None:
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def test_every_admin_page_shows_no_patient_data_unless_it_logs_the_look(world, superuser_client):
    shown: list[str] = []
    shown += _open(superuser_client, reverse("admin:index"), world)
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label
        rows = list(model._default_manager.order_by("pk").values_list("pk", flat=True)[:20])
        assert rows, f"the admin walk has no {label} row: create one in world()"
        shown += _open(superuser_client, reverse("admin:app_list", args=[model._meta.app_label]), world)
        listing = _url(model, "changelist")
        shown += _open(superuser_client, listing, world)
        if model_admin.get_search_fields(_request(superuser_client)):
            for person in world:
                for term in person.secrets:
                    response = superuser_client.get(listing, {"q": term})
                    assert response.status_code == 200, f"{label} search for {term!r}: {response.status_code}"
                    found = response.context["cl"].result_count
                    assert found == 0, f"{label}: a search for the patient's {term!r} finds {found} row(s)"
                    shown += _open(superuser_client, listing, world, searched=term)
        for pk in rows:
            for view in ("change", "history", "delete"):
                shown += _open(superuser_client, _url(model, view, pk), world)
    assert not shown, "admin pages show patient data without an access event:\n" + "\n".join(shown)


def test_the_patient_record_is_not_in_the_admin(world, superuser_client):
    """Nothing in the admin moves a record to another account (that is ``relink_patient``, with
    a reason, on the patient's log)."""
    assert Patient not in admin.site._registry
    record = world[0].record
    assert superuser_client.get(f"/admin/imaging/patient/{record.pk}/change/").status_code == 404
    response = superuser_client.post(f"/admin/imaging/patient/{record.pk}/change/", {"user": ""})
    assert response.status_code == 404
    record.refresh_from_db()
    assert record.user is not None
    # Nor does any admin form offer a field that holds a patient record.
    for model, model_admin in admin.site._registry.items():
        url = _url(model, "add")
        if url is None or not model_admin.has_add_permission(_request(superuser_client)):
            continue
        form = superuser_client.get(url).context["adminform"].form
        for name, field in form.fields.items():
            assert getattr(getattr(field, "queryset", None), "model", None) is not Patient, f"{model._meta.label}.{name}"


def _request(client: Client):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(pk=client.session["_auth_user_id"])
    return request

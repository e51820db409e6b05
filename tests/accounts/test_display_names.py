"""Officers have display names (docs/security.md §19): the patient's access log, the officer's
flag page and its events name the officer by it, never by email address; officers created
before the field existed get their role and number; the command that creates officers asks
for the name."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import AccessEvent
from flags import services
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory, actor_of
from tests.flags.conftest import make_study
from tests.flags.test_patient import raise_flag

pytestmark = pytest.mark.django_db


@pytest.fixture
def named_officer() -> User:
    user = UserFactory(role=User.Role.PRIVACY_OFFICER, email="j.okafor@hospital.example", display_name="Jane Okafor")
    AuthenticatorAppFactory(user=user)
    return user


def test_the_patient_reads_the_officers_name_not_their_email(named_officer, patient, patient_client):
    flag = raise_flag(patient, make_study(patient.patient))
    services.flag_claim(actor=actor_of(named_officer), flag=flag)
    officer_page = login_verified(Client(), named_officer).get(reverse("flags-officer-detail", args=[flag.pk]))
    assert officer_page.status_code == 200
    # The flag's timeline on the officer's page names the officer who claimed it the same way
    # (their own email is still in the page's menu: it is theirs).
    assert b'<span class="muted small">Jane Okafor' in officer_page.content

    look = AccessEvent.objects.get(patient=patient.patient, actor_type="privacy_office")
    assert (look.actor_name, look.actor_ref) == ("Jane Okafor", f"user:{named_officer.pk}")
    log = patient_client.get(reverse("audit-log"))
    assert b"Jane Okafor" in log.content
    assert b"j.okafor@hospital.example" not in log.content


def test_an_officer_without_a_display_name_is_named_by_role_and_number(officer, patient):
    assert officer.display_name == ""
    assert actor_of(officer).name == f"Privacy officer #{officer.pk}"
    assert officer.email not in actor_of(officer).name


def test_a_display_name_is_not_an_email_address(named_officer):
    named_officer.display_name = "jane@hospital.example"
    with pytest.raises(ValidationError) as exc:
        named_officer.full_clean()
    assert "display_name" in exc.value.message_dict


def test_existing_staff_get_role_and_number_from_the_migration(named_officer, officer):
    """The data migration (0005) names every officer and administrator without a name; a name
    already set is kept; patients get none."""
    admin_user = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True)
    patient_user = UserFactory()
    migration = importlib.import_module("accounts.migrations.0005_user_display_name")
    migration.name_existing_staff(apps, None)
    names = dict(User.objects.values_list("pk", "display_name"))
    assert names[officer.pk] == f"Privacy officer #{officer.pk}"
    assert names[admin_user.pk] == f"Administrator #{admin_user.pk}"
    assert names[named_officer.pk] == "Jane Okafor"
    assert names[patient_user.pk] == ""


def test_create_privacy_officer_sets_the_name(tmp_path):
    password_file = tmp_path / "pw.txt"
    password_file.write_text("ledger of quiet audits 42\n")
    out = StringIO()
    call_command("create_privacy_officer", "ola@hospital.example", "--name", "  Ola   Jones ", "--password-file",
                 str(password_file), stdout=out)
    officer = User.objects.get(email="ola@hospital.example")
    assert officer.display_name == "Ola Jones"
    assert actor_of(officer).name == "Ola Jones"
    for bad in ("", "   ", "ola@hospital.example"):
        with pytest.raises(CommandError):
            call_command("create_privacy_officer", "other@hospital.example", "--name", bad, "--password-file",
                         str(password_file), stdout=StringIO())
    assert not User.objects.filter(email="other@hospital.example").exists()
    with pytest.raises(CommandError):  # the name is required
        call_command("create_privacy_officer", "other@hospital.example", "--password-file", str(password_file))


def test_the_admin_edits_the_display_name(named_officer):
    admin_user = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=admin_user)
    client = login_verified(Client(), admin_user)
    url = reverse("admin:accounts_user_change", args=[named_officer.pk])
    page = client.get(url)
    assert b'name="display_name"' in page.content
    response = client.post(reverse("admin:accounts_user_add"), {
        "email": "new.officer@hospital.example", "role": "privacy_officer", "display_name": "Mika Laine",
        "password1": "ledger of quiet audits 42", "password2": "ledger of quiet audits 42", "usable_password": "true",
    })
    assert response.status_code == 302, response.content[:3000]
    assert User.objects.get(email="new.officer@hospital.example").display_name == "Mika Laine"

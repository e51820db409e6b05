"""Dates and times (issue 19, item 10): one house format, times in the person's own time zone
with the zone shown, the zone chosen on the account page from the tz database's list.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone
from django.utils.formats import date_format

from accounts.forms import TimeZoneForm
from accounts.models import SignInEvent
from accounts.timezones import TimeZoneMiddleware, time_zone_set, zone_for
from tests.audit.conftest import clinician_view
from tests.conftest import login_password_only
from tests.factories import actor_of

SECURITY_URL = "/account/security/"
TIME_ZONE_URL = "/account/security/time-zone/"
# 14:05 UTC on 4 December 2026 is 03:05 on the 5th in Auckland (NZDT, UTC+13): another day.
MOMENT = dt.datetime(2026, 12, 4, 14, 5, tzinfo=dt.UTC)
FAR = "Pacific/Auckland"


def test_one_house_format_with_the_zone():
    with timezone.override(zoneinfo.ZoneInfo("Europe/London")):
        local = timezone.localtime(MOMENT)
        assert date_format(local, "DATETIME_FORMAT") == "4 Dec 2026, 14:05 GMT"
        assert date_format(local.date(), "DATE_FORMAT") == "4 Dec 2026"
        assert date_format(local, "SHORT_DATETIME_FORMAT") == "4 Dec 2026, 14:05 GMT"


def test_zone_choices_are_the_tz_database():
    form = TimeZoneForm(default_label="Default")
    values = [value for value, _label in form.fields["time_zone"].choices]
    assert values[0] == ""
    assert set(values[1:]) == zoneinfo.available_timezones()
    assert values[1:] == sorted(values[1:])


@pytest.mark.django_db
def test_pages_show_the_persons_local_time_and_zone(client, patient):
    patient.time_zone = FAR
    patient.save(update_fields=["time_zone"])
    SignInEvent.objects.create(user=patient, method="totp", ip="192.0.2.5", user_agent="x")
    SignInEvent.objects.filter(user=patient).update(occurred_at=MOMENT)
    clinician_view(patient.patient, actor_name="Dr Far", occurred_at=MOMENT)
    client.force_login(patient)
    session = client.session
    session["otp_device_id"] = patient.authenticatorapp_set.get().persistent_id
    session.save()

    security = client.get(SECURITY_URL).content.decode()
    log = client.get("/access-log/").content.decode()

    for html in (security, log):
        assert "5 Dec 2026, 03:05 NZDT" in html
        assert "14:05" not in html
    assert 'datetime="2026-12-05T03:05:00+13:00"' in log


@pytest.mark.django_db
def test_a_person_without_a_zone_reads_the_site_default(patient):
    assert zone_for(patient) == zoneinfo.ZoneInfo(settings.TIME_ZONE)
    patient.time_zone = FAR
    assert zone_for(patient) == zoneinfo.ZoneInfo(FAR)


@pytest.mark.django_db
def test_the_middleware_activates_and_then_drops_the_zone(patient):
    patient.time_zone = FAR
    seen = []

    def view(request):
        seen.append(timezone.get_current_timezone_name())
        return HttpResponse()

    middleware = TimeZoneMiddleware(view)
    request = RequestFactory().get("/")
    request.user = patient
    middleware(request)
    assert seen == [FAR]
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE
    # The next request, by nobody in particular, gets the default even if a zone was left active.
    timezone.activate(zoneinfo.ZoneInfo("Asia/Tokyo"))
    anonymous = RequestFactory().get("/")
    anonymous.user = AnonymousUser()
    middleware(anonymous)
    assert seen[-1] == settings.TIME_ZONE


@pytest.mark.django_db
def test_setting_the_zone_on_the_account_page(patient_client, patient):
    page = patient_client.get(SECURITY_URL).content.decode()
    assert 'name="time_zone"' in page and '<option value="Pacific/Auckland">Pacific/Auckland</option>' in page

    response = patient_client.post(TIME_ZONE_URL, {"time_zone": FAR})
    assert response.status_code == 302 and response["Location"].startswith(SECURITY_URL)
    patient.refresh_from_db()
    assert patient.time_zone == FAR
    assert '<option value="Pacific/Auckland" selected>' in patient_client.get(SECURITY_URL).content.decode()

    patient_client.post(TIME_ZONE_URL, {"time_zone": "Mars/Olympus_Mons"})
    patient.refresh_from_db()
    assert patient.time_zone == FAR  # an unknown zone is refused, the old one kept

    patient_client.post(TIME_ZONE_URL, {"time_zone": ""})
    patient.refresh_from_db()
    assert patient.time_zone == ""


@pytest.mark.django_db
def test_the_service_refuses_an_unknown_zone(patient):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        time_zone_set(actor=actor_of(patient), time_zone="Not/A_Zone")


@pytest.mark.django_db
def test_time_zone_view_checks(client, patient, unverified_user):
    assert client.post(TIME_ZONE_URL, {"time_zone": FAR})["Location"].startswith("/accounts/login/")
    login_password_only(client, unverified_user)
    response = client.post(TIME_ZONE_URL, {"time_zone": FAR})
    assert response["Location"].startswith("/account/2fa/")
    unverified_user.refresh_from_db()
    assert unverified_user.time_zone == ""


@pytest.mark.django_db
def test_time_zone_view_is_post_only(patient_client):
    assert patient_client.get(TIME_ZONE_URL).status_code == 405


@pytest.mark.django_db
def test_csv_times_carry_the_zone(patient_client, patient):
    patient.time_zone = FAR
    patient.save(update_fields=["time_zone"])
    clinician_view(patient.patient, actor_name="Dr Far", occurred_at=MOMENT)
    from tests.conftest import reauthenticate

    reauthenticate(patient_client)
    response = patient_client.get("/access-log/download.csv")
    body = b"".join(response.streaming_content).decode()
    assert '"2026-12-05T03:05:00+13:00"' in body


# --- Every template uses the house formats ---------------------------------------------------

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# Formats for machines, not people: <time datetime>, URLs, dates in form fields.
MACHINE_FORMATS = {"c", "Y-m-d", "U"}
HOUSE_FORMATS = {
    "DATE_FORMAT", "DATETIME_FORMAT", "SHORT_DATE_FORMAT", "SHORT_DATETIME_FORMAT", "TIME_FORMAT", "YEAR_MONTH_FORMAT",
    "MONTH_DAY_FORMAT",
}
DATE_FILTER = re.compile(r"""\|\s*(date|time)\s*:\s*(["'])(.*?)\2""")
BARE_FILTER = re.compile(r"""\|\s*(date|time)\b(?!\s*:)""")
HUMANIZE = re.compile(r"\b(naturaltime|naturalday)\b")
NOW_TAG = re.compile(r"""\{%\s*now\s+(["'])(.*?)\1""")


def test_every_template_uses_the_house_formats():
    stray = []
    for path in sorted(TEMPLATES.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".txt"):
            continue
        text = path.read_text()
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(TEMPLATES)}:{lineno}"
            for match in DATE_FILTER.finditer(line):
                if match.group(3) not in MACHINE_FORMATS | HOUSE_FORMATS:
                    stray.append(f"{where}: |{match.group(1)}:{match.group(2)}{match.group(3)}{match.group(2)}")
            for match in NOW_TAG.finditer(line):
                if match.group(2) not in MACHINE_FORMATS | HOUSE_FORMATS:
                    stray.append(f"{where}: now {match.group(2)!r}")
            stray += [f"{where}: bare |{m.group(1)} (name the format)" for m in BARE_FILTER.finditer(line)]
            stray += [f"{where}: {m.group(1)} (say the date)" for m in HUMANIZE.finditer(line)]
    assert not stray, "dates in other formats than the house ones:\n" + "\n".join(stray)


@pytest.mark.parametrize("data", [None, {"time_zone": "Pacific/Auckland"}, {"time_zone": ""}, {"time_zone": '"><b>x'}])
def test_the_zone_select_has_djangos_markup(data):
    """accounts.forms.ZoneSelect writes the options once; the markup must be Django's own."""
    from django import forms

    quick = TimeZoneForm(data, default_label="The hospital's time (UTC)", initial={"time_zone": "Europe/London"})
    django = TimeZoneForm(data, default_label="The hospital's time (UTC)", initial={"time_zone": "Europe/London"})
    django.fields["time_zone"].widget = forms.Select(choices=django.fields["time_zone"].choices)
    quick.is_valid(), django.is_valid()
    assert str(quick["time_zone"]) == re.sub(r">\s+<", "><", str(django["time_zone"]))

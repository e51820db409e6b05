"""An officer's look at a flag is one line a day in the patient's log (issue: six reloads in a
minute were six events): one event per officer, flag, study and day (the portal's TIME_ZONE day),
race-safe under concurrent loads, and a new one on another day, for another study, or by another
officer."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AccessEvent
from flags import services
from tests.conftest import login_verified, wait_for
from tests.factories import actor_of
from tests.flags.conftest import make_study
from tests.flags.test_patient import raise_flag


def office_looks(flag) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(patient_id=flag.patient_id, actor_type="privacy_office").order_by("pk"))


def held_flag(patient, officer, **kwargs):
    flag = raise_flag(patient, make_study(patient.patient, **kwargs))
    services.flag_claim(actor=actor_of(officer), flag=flag)
    return flag


@pytest.mark.django_db
def test_six_page_loads_write_one_event(patient, officer):
    flag = held_flag(patient, officer)
    client = login_verified(Client(), officer)
    for _ in range(6):
        assert client.get(reverse("flags-officer-detail", args=[flag.pk])).status_code == 200
    (look,) = office_looks(flag)
    assert (look.action, look.details, look.study_id) == ("view", {"page": "flag", "flag": flag.pk}, flag.study_id)


@pytest.mark.django_db
def test_a_new_day_another_flag_or_another_officer_is_a_new_event(patient, officer, second_officer, settings):
    settings.TIME_ZONE = "Europe/Berlin"  # the day is the portal's, not UTC's
    flag = held_flag(patient, officer)
    other = held_flag(patient, officer, description="MR knee")  # same patient, another study
    berlin = timezone.get_default_timezone()
    morning = dt.datetime(2026, 3, 10, 0, 30, tzinfo=berlin)  # 23:30 UTC the day before
    evening = dt.datetime(2026, 3, 10, 23, 50, tzinfo=berlin)
    next_day = dt.datetime(2026, 3, 11, 0, 10, tzinfo=berlin)

    def look(user, f, when):
        services.flag_office_open(actor=actor_of(user), flag_id=f.pk, now=when)

    look(officer, flag, morning)
    look(officer, flag, evening)
    assert [e.occurred_at for e in office_looks(flag)] == [morning]
    look(officer, other, evening)  # another flag and study, same day: its own line
    look(officer, flag, next_day)
    assert [(e.details["flag"], e.occurred_at) for e in office_looks(flag)] == [
        (flag.pk, morning), (other.pk, evening), (flag.pk, next_day)]

    services.flag_assign(actor=actor_of(officer), flag=flag, assignee=second_officer)
    look(second_officer, flag, next_day)  # another officer the same day: a line naming them
    assert [e.actor_ref for e in office_looks(flag)][-1] == f"user:{second_officer.pk}"
    assert len(office_looks(flag)) == 4


@pytest.mark.django_db(transaction=True)
def test_two_loads_at_once_write_one_event(patient, officer):
    """The first load has written its event and not committed; the second starts then. Without
    the flag's row lock the second cannot see the first's event and writes its own."""
    flag = held_flag(patient, officer)
    written, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first():
        try:
            with transaction.atomic():
                services.flag_office_open(actor=actor_of(officer), flag_id=flag.pk)
                written.set()
                release.wait(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            written.set()
        finally:
            connection.close()

    def second():
        try:
            services.flag_office_open(actor=actor_of(officer), flag_id=flag.pk)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    t1 = threading.Thread(target=first)
    t1.start()
    assert written.wait(timeout=30)
    t2 = threading.Thread(target=second)
    t2.start()

    def second_waits_or_ended() -> bool:
        if not t2.is_alive():
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            return cursor.fetchone()[0] > 0

    wait_for(second_waits_or_ended, what="the second load to wait for the first")
    release.set()
    t1.join(timeout=30)
    t2.join(timeout=30)
    assert not errors, errors
    assert len(office_looks(flag)) == 1

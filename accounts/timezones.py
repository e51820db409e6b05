"""Each person reads times in their own time zone (issue 19).

The zone is a field on the user (``User.time_zone``), chosen on the account page from the tz
database's own list (``zoneinfo.available_timezones()``, no hand-kept list); blank means the
site's ``TIME_ZONE``. ``TimeZoneMiddleware`` activates it for each request, so every
``|date:"DATETIME_FORMAT"`` (which prints the zone) and ``timezone.localtime`` shows the
person's local time. Code running outside a request (emails, tasks) uses ``zone_for(user)``.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from core.actor import Actor


@cache
def zone_choices() -> list[tuple[str, str]]:
    """Every zone of the tz database, sorted, as (value, label) with "_" shown as a space."""
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


def zone_for(user) -> zoneinfo.ZoneInfo:
    """The zone ``user`` reads times in: their own choice, or the site's ``TIME_ZONE``."""
    name = getattr(user, "time_zone", "") or settings.TIME_ZONE
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # a zone removed from tzdata since
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


class TimeZoneMiddleware:
    """Activates the signed-in person's zone for the request, the site's default otherwise.

    Deactivates before each request as well, so a thread never carries one person's zone into
    the next person's request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.time_zone:
            timezone.activate(zone_for(user))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@transaction.atomic
def time_zone_set(*, actor: Actor, time_zone: str) -> None:
    """The signed-in person sets the zone they read times in ("" for the site's default).

    Callers: the account page. Changes only the actor's own account; records no access event
    (no patient data is read or changed)."""
    from accounts.models import User

    if actor.user_id is None:
        raise PermissionDenied("Only a signed-in person sets their own time zone.")
    user = User.objects.select_for_update().get(pk=actor.user_id)
    user.time_zone = time_zone
    user.full_clean(exclude=["password"])
    user.save(update_fields=["time_zone"])

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.http import HttpRequest

from accounts.models import User
from core.reauth import confirmed_action
from notices.selectors import unread_count


def site(request: HttpRequest) -> dict:
    return {"SITE_NAME": settings.SITE_NAME, "HOSPITAL_NAME": settings.HOSPITAL_NAME}


def role_of(request: HttpRequest) -> str:
    """Whose menu and start page: "patient", "officer" or "admin" (staff without a patient
    record); "" when signed out."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    if user.role == User.Role.PRIVACY_OFFICER:
        return "officer"
    actor = getattr(request, "actor", None)
    has_record = actor is not None and actor.patient_id is not None
    if not has_record and (user.role == User.Role.ADMINISTRATOR or user.is_staff or user.is_superuser):
        return "admin"
    return "patient"


def navigation(request: HttpRequest) -> dict:
    """The header's menu for the signed-in role, the bell's unread count and, on the password page,
    what the password confirms. Each is a function the template calls when it uses the value,
    at most once per page (``cache``): the count, one query on a partial index
    (``notices.selectors.unread_count``), runs only where the bell is shown."""

    @cache
    def count() -> int | None:
        """None for an account without a patient record: it has no notices, and no bell."""
        actor = getattr(request, "actor", None)
        return unread_count(actor=actor) if actor is not None and actor.patient_id is not None else None

    return {
        "NAV_ROLE": cache(lambda: role_of(request)),
        "NOTICES_UNREAD": count,
        "REAUTH_ACTION": cache(lambda: confirmed_action(request)),
    }

"""Recent reauthentication, checked in the view and again in the service (SECURITY.md 6)."""

from __future__ import annotations

from allauth.account.internal.flows.reauthentication import raise_if_reauthentication_required
from django.http import HttpRequest


def require_recent_reauthentication(request: HttpRequest) -> None:
    """Raise allauth's ``ReauthenticationRequired`` unless the password was re-entered within
    ``ACCOUNT_REAUTHENTICATION_TIMEOUT``. allauth's middleware turns the exception into a
    redirect to the reauthentication page that resumes the original request afterwards."""
    raise_if_reauthentication_required(request, app="account")

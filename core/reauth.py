"""Recent reauthentication, checked in the view and again in the service (docs/security.md §6)."""

from __future__ import annotations

from urllib.parse import urlencode

from allauth.account.internal.flows.reauthentication import (
    is_reauthentication_required,
    raise_if_reauthentication_required,
)
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

# Query parameter of the page a download started from, once the password has been confirmed.
DOWNLOAD_READY = "download"


def require_recent_reauthentication(request: HttpRequest) -> None:
    """Raise allauth's ``ReauthenticationRequired`` unless the password was re-entered within
    ``ACCOUNT_REAUTHENTICATION_TIMEOUT``. allauth's middleware turns the exception into a
    redirect to the reauthentication page that resumes the original request afterwards."""
    raise_if_reauthentication_required(request, app="account")


def reauthenticate_before_download(request: HttpRequest, *, back: str) -> HttpResponseRedirect | None:
    """None when the password was re-entered recently; otherwise a redirect to the password page
    that then returns the patient to ``back`` with ``download=ready`` added (docs/security.md §6).

    Why not allauth's usual resume of the request: a file response does not move the browser,
    so the password page stayed on screen while the file arrived, and typing the password again
    downloaded (and logged) a second copy. Back on the page the download started from, the
    patient is told the password is confirmed and downloads from there, once.
    """
    if not is_reauthentication_required(request, app="account"):
        return None
    back_url = f"{back}{'&' if '?' in back else '?'}{DOWNLOAD_READY}=ready"
    return HttpResponseRedirect(f"{reverse('account_reauthenticate')}?{urlencode({'next': back_url})}")


def download_ready(request: HttpRequest) -> bool:
    """True on the page the patient came back to after confirming the password for a download."""
    return request.GET.get(DOWNLOAD_READY) == "ready"

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import openapi
from core.signing import public_key_pem
from imaging.selectors import pacs_health
from portal.celery import HEARTBEAT_INTERVAL, HEARTBEAT_KEY
from portal.celery import app as celery_app
from portal.context_processors import role_of

public = login_not_required


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure
        return {"ok": False, "error": exc.__class__.__name__}


def _check_broker() -> dict:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": conn.transport_cls}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": exc.__class__.__name__}


def _check_workers() -> dict:
    try:
        beat = cache.get(HEARTBEAT_KEY)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": exc.__class__.__name__}
    if not beat:
        return {"ok": False, "error": "no heartbeat"}
    age = (timezone.now() - dt.datetime.fromisoformat(beat["at"])).total_seconds()
    # Three missed beats means the worker is gone or wedged.
    return {"ok": age < HEARTBEAT_INTERVAL * 3, "last_heartbeat_seconds_ago": round(age, 1)}


@public
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker and worker state. 503 only when the database is down: the portal keeps
    serving pages through a broker or worker outage (jobs wait in the queue)."""
    checks = {"database": _check_database(), "broker": _check_broker(), "workers": _check_workers()}
    # The PACS sync (last success, last error) is reported but never turns the answer 503: the
    # portal serves what it holds while the PACS is down.
    checks["pacs"] = pacs_health() if checks["database"]["ok"] else {"ok": False, "error": "database down"}
    status = 200 if checks["database"]["ok"] else 503
    return JsonResponse({"ok": all(c["ok"] for c in checks.values()), **checks}, status=status)


@public
@require_GET
def signing_key(request: HttpRequest) -> HttpResponse:
    """The public half of Lightbox's Ed25519 signing key, for checking receipts and manifests."""
    return HttpResponse(public_key_pem(), content_type="application/x-pem-file")


def _error(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)


def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    return _error(request, 400, "Something was wrong with that request", "Please go back and try again.")


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    return _error(request, 403, "You can't open this page", "If you think you should, contact the hospital's privacy office.")


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return _error(request, 404, "We couldn't find that page", "It may have moved, or the link may be mistyped.")


def too_many_requests(request: HttpRequest, exception=None) -> HttpResponse:
    return _error(request, 429, "Too many attempts", "For your safety we paused this for a few minutes. Please wait and try again.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Our page for a form sent without a valid CSRF token (an old tab, cleared cookies); Django's
    own page has an inline style the CSP blocks and no landmarks."""
    return _error(request, 403, "This form has expired", "Go back, reload the page and try again.")


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500, "Something went wrong on our side", "We have been told about it. Please try again in a few minutes.")


@login_not_required
@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.document(), json_dumps_params={"indent": 2})


@require_GET
@never_cache
def start(request: HttpRequest) -> HttpResponse:
    """Where signing in lands (``LOGIN_REDIRECT_URL``), by role: a patient on their scans, a
    privacy officer on the flag queue, an administrator (staff without a patient record) on a
    page that leads to the admin. The brand link in the header comes here too."""
    role = role_of(request)
    if role == "officer":
        return redirect("flags-queue")
    if role == "admin":
        return render(request, "portal/admin_start.html")
    return redirect("home")

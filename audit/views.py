"""The patient's access log: the page, its CSV download and the notification preferences.

Every view acts as ``request.actor``. Opening the log and downloading it are themselves access
events: the audited reads in ``audit.reads`` select and record them in one transaction; the
views only present what those return.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit import notifications, reads, selectors
from audit.charts import timeline_chart
from audit.forms import AccessLogFilterForm, NotificationPreferenceForm
from core.reauth import DOWNLOAD_READY, download_ready, reauthenticate_before_download
from core.spreadsheet import csv_lines

CSV_COLUMNS = [
    "occurred_at", "actor_type", "actor_name", "role", "organization", "purpose", "action", "outcome",
    "study", "study_date", "source", "event_id",
]
# Streamed rows per query: memory stays flat for a long history.
CSV_CHUNK = 2000


def _filter_form(request: HttpRequest) -> AccessLogFilterForm:
    return AccessLogFilterForm(request.GET or None, choices=selectors.filter_choices(actor=request.actor))


@require_GET
@never_cache
def access_log(request: HttpRequest) -> HttpResponse:
    if request.actor.patient_id is None:  # officers and administrators own no record
        return render(request, "audit/no_record.html")
    form = _filter_form(request)
    log = reads.access_log_open(actor=request.actor, filters=form.filters(), before=request.GET.get("before", ""))
    query = request.GET.copy()
    query.pop("before", None)
    query.pop(DOWNLOAD_READY, None)
    flag_url_query = query.urlencode()
    return render(
        request,
        "audit/log.html",
        {
            "patient": log.patient,
            "reader_is_proxy": request.actor.is_proxy,  # "your own" is then the proxy's, not the patient's
            "form": form,
            "filtered": form.narrows,
            "rows": log.rows,
            "page": log.page,
            "own": log.own,
            "show": form.filters().show,
            "query": flag_url_query,
            "summary": log.summary,
            "chart": timeline_chart(log.summary),
            "download_ready": download_ready(request),
        },
    )


def _csv_rows(events, zone: dt.tzinfo) -> Iterator[str]:
    # Times in the patient's zone, with its offset ("2026-12-05T03:05:00+13:00"): the file is
    # read after the request, when the middleware has already let go of the zone.
    rows = (
        (
            e.occurred_at.astimezone(zone).isoformat(), e.get_actor_type_display(), e.actor_name, e.role, e.organization,
            e.get_purpose_display(), e.get_action_display(), e.get_outcome_display(),
            e.study.description if e.study else "", e.study.study_date if e.study else "",
            e.get_source_display(), e.pk,
        )
        for e in events.iterator(chunk_size=CSV_CHUNK)
    )
    # docs/security.md §25: every field quoted, formulas defused whatever the separator.
    return csv_lines(CSV_COLUMNS, rows)


@require_GET
@never_cache
def access_log_csv(request: HttpRequest) -> HttpResponse:
    # docs/security.md §6: downloads need a fresh password; afterwards, back to the same filtered log.
    query = request.GET.copy()
    query.pop(DOWNLOAD_READY, None)
    back = f"{reverse('audit-log')}?{query.urlencode()}" if query else reverse("audit-log")
    if (confirm := reauthenticate_before_download(request, back=back, action="access_log_download")) is not None:
        return confirm
    if request.actor.patient_id is None:  # officers and administrators own no record
        return render(request, "audit/no_record.html", status=404)
    events = reads.access_log_download(actor=request.actor, filters=_filter_form(request).filters())
    response = StreamingHttpResponse(_csv_rows(events, timezone.get_current_timezone()), content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@never_cache
def preferences(request: HttpRequest) -> HttpResponse:
    if request.actor.patient_id is None:  # officers and administrators own no record
        return render(request, "audit/no_record.html", status=404)
    current = notifications.preference_for(request.user)
    form = NotificationPreferenceForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        notifications.notification_preference_update(actor=request.actor, **form.cleaned_data)
        messages.success(request, _("Your email choices are saved."))
        return redirect("audit-preferences")
    return render(request, "audit/preferences.html", {"form": form})


@require_GET
@never_cache
def access_log_receipt(request: HttpRequest) -> HttpResponse:
    """The receipt of the patient's access log, as one JSON file (audit.reads.access_log_receipt)."""
    if request.actor.patient_id is None:  # officers and administrators own no record
        return render(request, "audit/no_record.html", status=404)
    receipt = reads.access_log_receipt(actor=request.actor)
    response = HttpResponse(json.dumps(receipt, indent=2) + "\n", content_type="application/json")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="access-log-receipt-{stamp}.json"'
    return response

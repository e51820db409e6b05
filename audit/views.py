"""The patient's access log: the page, its CSV download and the notification preferences.

Reads go through ``audit.selectors`` (narrowed to the signed-in patient). Opening the log and
downloading it are themselves access events, recorded in the same transaction as the read.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit import notifications, selectors
from audit.charts import timeline_chart
from audit.forms import AccessLogFilterForm, NotificationPreferenceForm
from audit.services import record_portal_access
from core.reauth import DOWNLOAD_READY, download_ready, reauthenticate_before_download

CSV_COLUMNS = [
    "occurred_at", "actor_type", "actor_name", "role", "organization", "purpose", "action", "outcome",
    "study", "study_date", "source", "event_id",
]
# Streamed rows per query: memory stays flat for a long history.
CSV_CHUNK = 2000


def _filter_form(request: HttpRequest) -> AccessLogFilterForm:
    return AccessLogFilterForm(request.GET or None, choices=selectors.filter_choices(request.user))


@require_GET
@never_cache
@transaction.atomic
def access_log(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        return render(request, "audit/no_record.html")
    form = _filter_form(request)
    filters = form.filters()
    visit = record_portal_access(request, patient=patient, action="view", details={"page": selectors.LOG_PAGE})
    last_visit = selectors.last_visit(request.user, before=visit)
    page = selectors.log_page(selectors.filtered_events(request.user, filters), before=request.GET.get("before", ""))
    summary = selectors.log_summary(request.user, last_visit_at=last_visit)
    query = request.GET.copy()
    query.pop("before", None)
    query.pop(DOWNLOAD_READY, None)
    flag_url_query = query.urlencode()
    return render(
        request,
        "audit/log.html",
        {
            "patient": patient,
            "form": form,
            "filtered": form.active,
            "rows": selectors.log_rows(patient.pk, page.events, last_visit=last_visit),
            "page": page,
            "query": flag_url_query,
            "summary": summary,
            "chart": timeline_chart(summary),
            "download_ready": download_ready(request),
        },
    )


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting like a formula (CSV injection); a quote defuses it.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _csv_rows(events) -> Iterator[str]:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    yield "\ufeff"  # a BOM, so spreadsheet programs read the UTF-8 names correctly
    yield writer.writerow(CSV_COLUMNS)
    for e in events.iterator(chunk_size=CSV_CHUNK):
        yield writer.writerow(
            [
                _csv_cell(v)
                for v in (
                    e.occurred_at.isoformat(), e.get_actor_type_display(), e.actor_name, e.role, e.organization,
                    e.get_purpose_display(), e.get_action_display(), e.get_outcome_display(),
                    e.study.description if e.study else "", e.study.study_date if e.study else "",
                    e.get_source_display(), e.pk,
                )
            ]
        )


@require_GET
@never_cache
def access_log_csv(request: HttpRequest) -> HttpResponse:
    # docs/security.md §6: downloads need a fresh password; afterwards, back to the same filtered log.
    query = request.GET.copy()
    query.pop(DOWNLOAD_READY, None)
    back = f"{reverse('audit-log')}?{query.urlencode()}" if query else reverse("audit-log")
    if (confirm := reauthenticate_before_download(request, back=back)) is not None:
        return confirm
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        return render(request, "audit/no_record.html", status=404)
    form = _filter_form(request)
    filters = form.filters()
    with transaction.atomic():
        record_portal_access(
            request, patient=patient, action="download", details={"page": "access_log_csv", "filtered": form.active}
        )
    events = selectors.filtered_events(request.user, filters)
    response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@never_cache
def preferences(request: HttpRequest) -> HttpResponse:
    if selectors.patient_for_user(request.user) is None:
        return render(request, "audit/no_record.html", status=404)
    current = notifications.preference_for(request.user)
    form = NotificationPreferenceForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        notifications.notification_preference_update(actor=request.user, **form.cleaned_data)
        messages.success(request, _("Your email choices are saved."))
        return redirect("audit-preferences")
    return render(request, "audit/preferences.html", {"form": form})




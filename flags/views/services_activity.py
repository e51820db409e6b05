"""The privacy office's page of service-account activity (``/privacy-office/service-accounts/``).

Per token: requests, answers refused with 429, lookups that found nothing, last use; and the
latest of those lookups, each naming the patient only by a keyed hash (docs/security.md §22).
Officers only: everyone else gets 404, like every privacy-office page. Shows no patient data and
so writes no access event.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.service_activity import service_activity_summary
from flags.selectors import require_officer


@require_GET
@never_cache
def service_activity(request: HttpRequest) -> HttpResponse:
    require_officer(request.actor)
    return render(request, "flags/service_activity.html", {"a": service_activity_summary(actor=request.actor)})

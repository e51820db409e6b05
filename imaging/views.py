from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from imaging.selectors import patient_for_user


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    patient = patient_for_user(request.user)
    return render(request, "imaging/home.html", {"patient": patient})

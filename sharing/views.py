"""The patient's sharing pages: the list of their pushes (with progress), sending studies to a
partner hospital, and the progress a page polls. Every view acts as ``request.actor`` through
``sharing.selectors`` and ``sharing.services`` (another patient's push is a 404); sending needs a
fresh reauthentication, checked here (allauth's decorator) and again in the service
(docs/security.md §6). GET pages change nothing.
"""

from __future__ import annotations

from allauth.account.decorators import reauthentication_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from imaging.selectors import patient_own, study_list
from sharing import selectors, services
from sharing.forms import PushForm


@require_GET
@never_cache
def sharing_list(request: HttpRequest) -> HttpResponse:
    pushes = list(selectors.push_list(actor=request.actor)[:100])
    return render(request, "sharing/list.html", {
        "pushes": pushes, "is_patient": request.actor.patient_id is not None,
    })


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required(allow_get=True)
def sharing_send(request: HttpRequest) -> HttpResponse:
    patient_own(actor=request.actor)  # an officer or administrator has no studies to send: 404
    studies = list(study_list(actor=request.actor))
    partners = list(selectors.partner_choices())
    initial = {"studies": request.GET.getlist("study")} if request.method == "GET" else None
    form = PushForm(request.POST or None, initial=initial, studies=studies, partners=partners)
    if request.method == "POST" and form.is_valid():
        try:
            services.push_request(actor=request.actor, study_ids=form.study_ids(), partner_id=form.partner_id())
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            return redirect("sharing-list")
    return render(request, "sharing/send.html", {"form": form, "has_studies": bool(studies), "has_partners": bool(partners)},
                  status=400 if request.method == "POST" else 200)


@require_GET
@never_cache
def push_status(request: HttpRequest, push_id: int) -> JsonResponse:
    push = selectors.push_get(actor=request.actor, push_id=push_id)
    return JsonResponse(selectors.status_payload(push))

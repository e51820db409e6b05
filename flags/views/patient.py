"""The patient's side: report a study or an access-log entry, "My reports", one report, reply.

Every page acts as ``request.actor`` and shows the patient's own data only (another patient's id
is a 404). The pages that show patient data are audited reads in ``flags.services``, which
record one access event each; these views only call them and render.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from flags import selectors, services
from flags.forms import FlagForm, ReplyForm
from imaging.selectors import patient_get


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise Http404("No such record.") from None


def _error_messages(exc: ValidationError) -> list[str]:
    return [str(m) for m in exc.messages]


@require_http_methods(["GET", "POST"])
@never_cache
def flag_new(request: HttpRequest) -> HttpResponse:
    actor = request.actor
    study_id = event_id = None
    if "event" in request.GET:
        event_id = _int(request.GET.get("event"))
    elif "study" in request.GET:
        study_id = _int(request.GET.get("study"))
    else:
        return render(request, "flags/pick.html", {"patient": patient_get(actor=actor)})
    target = "study" if study_id is not None else "event"
    form = FlagForm(request.POST or None, target=target)
    if request.method == "POST" and form.is_valid():
        try:
            flag = services.flag_create(
                actor=actor, study_id=study_id, access_event_id=event_id,
                category=form.cleaned_data["category"], description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            for message in _error_messages(exc):
                form.add_error(None, message)
        else:
            messages.success(request, _("Thank you. Your report has been sent to the privacy office."))
            return redirect("flags-detail", flag_id=flag.pk)
    opened = services.flag_target_open(actor=actor, study_id=study_id, access_event_id=event_id)
    return render(
        request, "flags/new.html", {"form": form, "study": opened.study, "event": opened.event, "target": target},
        status=400 if form.is_bound and form.errors else 200,
    )


@require_http_methods(["GET"])
@never_cache
def flags_mine(request: HttpRequest) -> HttpResponse:
    reports = services.flag_list_open(actor=request.actor)
    return render(
        request, "flags/mine.html",
        {"patient": reports.patient, "flags": reports.flags, "notices": reports.notices, "unread": reports.unread},
    )


@require_http_methods(["GET"])
@never_cache
def flag_detail(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = services.flag_open(actor=request.actor, flag_id=flag_id)
    return render(
        request, "flags/detail.html",
        {"flag": flag, "timeline": selectors.patient_timeline(flag), "reply_form": ReplyForm() if flag.status == "needs_info" else None},
    )


@require_POST
@never_cache
def flag_reply(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_get(actor=request.actor, flag_id=flag_id)
    form = ReplyForm(request.POST)
    if form.is_valid():
        try:
            services.flag_reply(actor=request.actor, flag=flag, text=form.cleaned_data["text"])
        except ValidationError as exc:
            for message in _error_messages(exc):
                messages.error(request, message)
        else:
            messages.success(request, _("Your reply has been sent to the privacy office."))
    else:
        messages.error(request, _("Write your reply before sending it."))
    return redirect(reverse("flags-detail", kwargs={"flag_id": flag.pk}))


@require_POST
def notices_read(request: HttpRequest) -> HttpResponse:
    if request.actor.patient_id is None:
        raise Http404("No record.")
    services.notices_mark_read(actor=request.actor)
    return redirect("flags-mine")

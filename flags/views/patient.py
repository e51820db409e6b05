"""The patient's side: report a study or an access-log entry, "My reports", one report, reply.

Every page shows the patient's own data only (selectors; another patient's id is a 404) and
records one access event in the same transaction, like the imaging pages.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from audit.models import AccessEvent
from audit.services import record_portal_access
from flags import selectors, services
from flags.forms import FlagForm, ReplyForm
from imaging import selectors as imaging_selectors


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise Http404("No such record.") from None


def _error_messages(exc: ValidationError) -> list[str]:
    return [str(m) for m in exc.messages]


@require_http_methods(["GET", "POST"])
@never_cache
@transaction.atomic
def flag_new(request: HttpRequest) -> HttpResponse:
    patient = imaging_selectors.patient_for_user(request.user)
    study = event = None
    if "event" in request.GET:
        event = selectors.access_event_for_user(request.user, _int(request.GET.get("event")))
    elif "study" in request.GET:
        study = imaging_selectors.study_for_user(request.user, _int(request.GET.get("study")))
    if patient is None or (study is None and event is None):
        return render(request, "flags/pick.html", {"patient": patient})
    target = "study" if study is not None else "event"
    form = FlagForm(request.POST or None, target=target)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                flag = services.flag_create(
                    actor=request.user, patient=patient, study=study, access_event=event,
                    category=form.cleaned_data["category"], description=form.cleaned_data["description"],
                )
        except ValidationError as exc:
            for message in _error_messages(exc):
                form.add_error(None, message)
        else:
            record_portal_access(
                request, patient=patient, study=study or (event.study if event else None),
                action=AccessEvent.Action.MODIFY, details={"page": "flag_new", "flag": flag.pk},
            )
            messages.success(request, _("Thank you. Your report has been sent to the privacy office."))
            return redirect("flags-detail", flag_id=flag.pk)
    record_portal_access(
        request, patient=patient, study=study or (event.study if event else None), action=AccessEvent.Action.VIEW,
        details={"page": "flag_new", **({"event": event.pk} if event else {})},
    )
    return render(
        request, "flags/new.html", {"form": form, "study": study, "event": event, "target": target},
        status=400 if form.is_bound and form.errors else 200,
    )


@require_http_methods(["GET"])
@never_cache
@transaction.atomic
def flags_mine(request: HttpRequest) -> HttpResponse:
    patient = imaging_selectors.patient_for_user(request.user)
    flags = list(selectors.flags_for_user(request.user))
    notices = selectors.notices_for_user(request.user)
    if patient is not None:
        record_portal_access(request, patient=patient, action=AccessEvent.Action.VIEW, details={"page": "flags_mine"})
    return render(
        request, "flags/mine.html",
        {"patient": patient, "flags": flags, "notices": notices, "unread": sum(1 for n in notices if n.read_at is None)},
    )


@require_http_methods(["GET"])
@never_cache
@transaction.atomic
def flag_detail(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_for_user(request.user, flag_id)
    record_portal_access(
        request, patient=flag.patient, study=flag.study, action=AccessEvent.Action.VIEW, details={"page": "flag", "flag": flag.pk}
    )
    return render(
        request, "flags/detail.html",
        {"flag": flag, "timeline": selectors.patient_timeline(flag), "reply_form": ReplyForm() if flag.status == "needs_info" else None},
    )


@require_POST
@never_cache
def flag_reply(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_for_user(request.user, flag_id)
    form = ReplyForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                services.flag_reply(actor=request.user, flag=flag, text=form.cleaned_data["text"])
                record_portal_access(
                    request, patient=flag.patient, study=flag.study, action=AccessEvent.Action.MODIFY,
                    details={"page": "flag_reply", "flag": flag.pk},
                )
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
    patient = imaging_selectors.patient_for_user(request.user)
    if patient is None:
        raise Http404("No record.")
    services.notices_mark_read(actor=request.user, patient=patient)
    return redirect("flags-mine")

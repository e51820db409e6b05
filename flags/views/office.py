"""The privacy office's side: queue, flag page, claim/assign, notes, messages, status,
integrity re-check, incident notices, dashboard.

Every view acts as ``request.actor``. Non-officers get 404 on every page here (they learn nothing
about the office's pages). An officer reaches a patient's data only through a flag they hold
(``selectors.flag_office_get``, 404 otherwise), narrowed to that flag's patient; the flag page
(``services.flag_office_open``) and the integrity re-check are services that each record one
access event with purpose privacy investigation, which the patient sees in their access log. The
queue only reads: integrity alerts reach it through the periodic task, never on page load.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from flags import selectors, services
from flags.forms import AssignForm, IncidentForm, MessageForm, NoteForm, QueueFilterForm, StatusForm
from flags.models import Flag

QUEUE_PAGE_SIZE = 50


def _errors(request: HttpRequest, exc: ValidationError) -> None:
    for message in exc.messages:
        messages.error(request, str(message))


def _form_errors(request: HttpRequest, form) -> None:
    for field, errors in form.errors.items():
        for error in errors:
            label = form.fields[field].label if field in form.fields else ""
            messages.error(request, f"{label}: {error}" if label else str(error))


def _to_flag(flag_id: int) -> HttpResponse:
    return redirect("flags-officer-detail", flag_id=flag_id)


@require_GET
@never_cache
def queue(request: HttpRequest) -> HttpResponse:
    selectors.require_officer(request.actor)
    form = QueueFilterForm(request.GET or None)
    flags = selectors.flag_queue(actor=request.actor, filters=form.filters())
    page = Paginator(flags, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    params = {k: v for k, v in request.GET.items() if k != "page"}
    return render(
        request, "flags/queue.html",
        {"form": form, "page": page, "query": urlencode(params), "now": timezone.now()},
    )


@require_GET
@never_cache
def officer_detail(request: HttpRequest, flag_id: int) -> HttpResponse:
    ctx = services.flag_office_open(actor=request.actor, flag_id=flag_id)
    flag = ctx.flag
    allowed = services.TRANSITIONS[flag.status]
    status_form = StatusForm()
    status_form.fields["status"].choices = [(v, lbl) for v, lbl in Flag.office_status_choices() if v in allowed]
    now = timezone.localtime()
    incident_initial = {
        "organization": ctx.event.organization if ctx.event else "",
        "limit_to_study": ctx.study is not None and ctx.event is None,
        "window_start": (timezone.localtime(ctx.event.occurred_at) - dt.timedelta(days=1)) if ctx.event else now - dt.timedelta(days=30),
        "window_end": (timezone.localtime(ctx.event.occurred_at) + dt.timedelta(days=1)) if ctx.event else now,
    }
    return render(
        request, "flags/officer_detail.html",
        {
            "flag": flag,
            "ctx": ctx,
            # Notes and messages both have a "text" field: distinct ids keep each label on its own box.
            "note_form": NoteForm(auto_id="note_%s"),
            "message_form": MessageForm(),
            "status_form": status_form if allowed else None,
            "assign_form": AssignForm(initial={"assignee": request.actor.user_id}),
            "incident_form": IncidentForm(initial=incident_initial),
        },
    )


@require_POST
def claim(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_queue_get(actor=request.actor, flag_id=flag_id)
    try:
        services.flag_claim(actor=request.actor, flag=flag)
    except PermissionDenied:
        raise Http404("No such flag.") from None  # held by someone else: as if it were not there
    messages.success(request, _("You now hold flag #%(id)s.") % {"id": flag.pk})
    return _to_flag(flag.pk)


@require_POST
def assign(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_queue_get(actor=request.actor, flag_id=flag_id)
    form = AssignForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("flags-queue")
    try:
        services.flag_assign(actor=request.actor, flag=flag, assignee=form.cleaned_data["assignee"])
    except PermissionDenied:
        raise Http404("No such flag.") from None
    except ValidationError as exc:
        _errors(request, exc)
        return redirect("flags-queue")
    assignee = form.cleaned_data["assignee"]
    messages.success(request, _("Flag #%(id)s is now held by %(who)s.") % {"id": flag.pk, "who": assignee.public_name})
    return _to_flag(flag.pk) if assignee.pk == request.actor.user_id else redirect("flags-queue")


@require_POST
def note(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_office_get(actor=request.actor, flag_id=flag_id)
    form = NoteForm(request.POST)
    if form.is_valid():
        services.flag_note(actor=request.actor, flag=flag, text=form.cleaned_data["text"])
        messages.success(request, _("Note added."))
    else:
        _form_errors(request, form)
    return _to_flag(flag.pk)


@require_POST
def message(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_office_get(actor=request.actor, flag_id=flag_id)
    form = MessageForm(request.POST)
    if form.is_valid():
        try:
            services.flag_message(
                actor=request.actor, flag=flag, text=form.cleaned_data["text"], ask_for_info=form.cleaned_data["ask_for_info"]
            )
        except ValidationError as exc:
            _errors(request, exc)
        else:
            messages.success(request, _("Message sent to the patient."))
    else:
        _form_errors(request, form)
    return _to_flag(flag.pk)


@require_POST
def status(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_office_get(actor=request.actor, flag_id=flag_id)
    form = StatusForm(request.POST)
    if form.is_valid():
        try:
            services.flag_transition(
                actor=request.actor, flag=flag, to=form.cleaned_data["status"], resolution=form.cleaned_data["resolution"]
            )
        except ValidationError as exc:
            _errors(request, exc)
        else:
            messages.success(request, _("Status changed."))
    else:
        _form_errors(request, form)
    return _to_flag(flag.pk)


@require_POST
def integrity_recheck(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_office_get(actor=request.actor, flag_id=flag_id)
    try:
        result = services.flag_integrity_recheck(actor=request.actor, flag=flag)
    except ValidationError as exc:
        _errors(request, exc)
    else:
        if result.mismatched or result.missing:
            messages.warning(
                request,
                _("Integrity re-check: %(bad)s of %(n)s files do not match their fingerprint or are missing.")
                % {"bad": result.mismatched + result.missing, "n": result.checked},
            )
        else:
            messages.success(request, _("Integrity re-check: all %(n)s files match.") % {"n": result.checked})
    return _to_flag(flag.pk)


@require_http_methods(["POST"])
def incident(request: HttpRequest, flag_id: int) -> HttpResponse:
    flag = selectors.flag_office_get(actor=request.actor, flag_id=flag_id)
    form = IncidentForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _to_flag(flag.pk)
    data = form.cleaned_data
    study = selectors.flag_subject_study(flag) if data["limit_to_study"] else None
    if data["limit_to_study"] and study is None:
        messages.error(request, _("This flag is not about a particular study."))
        return _to_flag(flag.pk)
    criteria = services.IncidentCriteria(
        window_start=data["window_start"], window_end=data["window_end"], organization=data["organization"], study=study
    )
    try:
        result = services.incident_confirm(
            actor=request.actor, flag=flag, criteria=criteria, subject=data["subject"], message=data["message"]
        )
    except ValidationError as exc:
        _errors(request, exc)
    else:
        messages.success(
            request, _("Incident #%(id)s confirmed; %(n)s patients notified.") % {"id": result.pk, "n": result.patients_notified}
        )
    return _to_flag(flag.pk)


# Chart geometry (SVG user units): the viewBox scales to the container, so this is proportion only.
CHART_W, CHART_H, CHART_PAD = 600, 220, 28


def _chart(weeks: list[dict]) -> dict:
    peak = max([1, *(w["opened"] for w in weeks), *(w["closed"] for w in weeks)])
    slot = (CHART_W - CHART_PAD) / max(1, len(weeks))
    bar = slot * 0.36
    plot_h = CHART_H - 2 * CHART_PAD
    bars = []
    for i, w in enumerate(weeks):
        x = CHART_PAD + i * slot + slot * 0.1
        for j, key in enumerate(("opened", "closed")):
            h = plot_h * w[key] / peak
            bars.append(
                {"x": round(x + j * bar, 1), "y": round(CHART_H - CHART_PAD - h, 1), "w": round(bar, 1), "h": round(h, 1),
                 "kind": key, "value": w[key], "week": w["start"]}
            )
    labels = [{"x": round(CHART_PAD + i * slot + slot / 2, 1), "text": w["start"].strftime("%d %b")} for i, w in enumerate(weeks) if i % 2 == 0]
    return {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD, "base": CHART_H - CHART_PAD, "peak": peak, "bars": bars, "labels": labels}


@require_GET
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    data = selectors.dashboard(actor=request.actor)
    return render(request, "flags/dashboard.html", {"d": data, "chart": _chart(data.weeks)})

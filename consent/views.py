"""The patient's consent pages, the signed receipts, and the privacy office's record form.

Every view acts as ``request.actor`` and narrows through the selectors (another patient's
receipt or study is a 404); none writes anything itself. Every choice goes through
``consent.services`` after a fresh reauthentication (checked here by allauth's decorator and
again in the service). Pages that show the patient's decisions or their access log are audited
reads (``consent.reads``), each recording one access event; the consent overview, like the scans
list, records none.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from consent import reads, selectors, services
from consent.forms import ChangeForm, OfficeRecordForm
from consent.models import ConsentDecision, ConsentPolicy
from consent.scopes import SCOPES
from core.reauth import reauthentication_required
from imaging.models import Study
from imaging.selectors import patient_get, patient_own, study_get


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    actor = request.actor
    patient = patient_get(actor=actor)
    if patient is None:
        return render(request, "consent/home.html", {"patient": None})
    policy, stale = selectors.pending_policy(actor=actor, patient=patient)
    cards = selectors.consent_cards(actor=actor, patient=patient)
    # The intro says what is true for this patient now (their choices, then the default where
    # they have not chosen), never a blanket "nothing is used" that their own cards contradict.
    return render(
        request,
        "consent/home.html",
        {"patient": patient, "cards": cards, "policy": policy, "stale": stale, "default": selectors.default_decision(),
         "has_studies": Study.objects.for_actor(actor).exists(),
         "allowed_cards": [c for c in cards if c.allowed], "refused_cards": [c for c in cards if not c.allowed],
         "undecided": sum(1 for c in cards if c.current is None)},
    )


def _study_param(request: HttpRequest, data) -> Study | None:
    """The study named in the form data: one of the patient's own, else a 404 like a missing one."""
    raw = (data.get("study") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit() is true for "²", which int() refuses
        raise Http404("No such study.")
    return study_get(actor=request.actor, study_id=int(raw))


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required("consent_change")
def change(request: HttpRequest, scope: str) -> HttpResponse:
    """GET: the confirmation of a change (what it means, what it cannot undo). POST: make it."""
    if scope not in SCOPES:
        raise Http404("No such use.")
    patient = patient_own(actor=request.actor)
    data = request.POST if request.method == "POST" else request.GET
    study = _study_param(request, data)
    form = ChangeForm(data or None, actor=request.actor)
    if request.method == "GET" and form.is_bound and not form.is_valid():
        # A link that names only the study (or nothing valid): ask, without shouting errors.
        form = ChangeForm(initial={"study": study.pk if study else None}, actor=request.actor)
    if request.method == "POST" and form.is_valid():
        try:
            decision = services.consent_decision_record(
                actor=request.actor, scope=scope, decision=form.cleaned_data["decision"],
                study_id=study.pk if study else None,
            )
        except services.NoPolicy:
            form.add_error(None, _("The hospital has not published its consent policy yet, so choices cannot be recorded."))
        else:
            messages.success(request, _("Your choice is saved. This is your receipt."))
            return redirect("consent-receipt", receipt_id=decision.receipt_id)
    chosen = form.cleaned_data.get("decision") if form.is_bound and form.is_valid() else None
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "consent/change.html",
        {"info": SCOPES[scope], "form": form, "study": study, "current": selectors.effective_consent(patient, scope, study),
         "chosen": chosen, "policy": selectors.current_policy()},
        status=status,
    )


@require_GET
@never_cache
def history(request: HttpRequest) -> HttpResponse:
    decisions = reads.consent_history_open(actor=request.actor)
    return render(request, "consent/history.html", {"decisions": decisions})


@require_GET
@never_cache
def receipt(request: HttpRequest, receipt_id) -> HttpResponse:
    decision = reads.consent_receipt_open(actor=request.actor, receipt_id=receipt_id)
    return render(request, "consent/receipt.html", {"decision": decision, "body": decision.receipt.get("receipt", {}),
                                                    "signature": decision.receipt.get("signature", {})})


@require_GET
@never_cache
def receipt_json(request: HttpRequest, receipt_id) -> HttpResponse:
    decision = reads.consent_receipt_download(actor=request.actor, receipt_id=receipt_id)
    response = HttpResponse(json.dumps(decision.receipt, indent=2, sort_keys=True), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="consent-receipt-{decision.receipt_id}.json"'
    return response


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required("consent_policy", allow_get=True)
def policy(request: HttpRequest) -> HttpResponse:
    patient = patient_get(actor=request.actor)
    current, stale = (
        selectors.pending_policy(actor=request.actor, patient=patient) if patient else (selectors.current_policy(), [])
    )
    if request.method == "POST":
        if patient is None:
            raise Http404("This account has no patient record.")
        rows = services.consent_policy_confirm(actor=request.actor)
        if rows:
            messages.success(request, _("Thank you. Your choices now stand under policy version %(v)s.") % {"v": current.version})
        return redirect("consent-home")
    oldest = min((d.policy.version for d in stale), default=None)
    changes = selectors.policies_between(oldest, current.version) if current and oldest is not None else []
    return render(
        request,
        "consent/policy.html",
        {"policy": current, "stale": stale, "changes": changes, "versions": ConsentPolicy.objects.order_by("-version")},
    )


@require_GET
@never_cache
def partners(request: HttpRequest) -> HttpResponse:
    # The page reads the patient's access log (who used their scans): reading it is logged too.
    rows = reads.consent_partners_open(actor=request.actor)
    return render(request, "consent/partners.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required("consent_paper")
def office_record(request: HttpRequest) -> HttpResponse:
    if not request.actor.is_officer:
        raise Http404("Not found.")
    form = OfficeRecordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            decision = services.consent_decision_record_for_patient(
                actor=request.actor, patient=data["patient"], scope=data["scope"], decision=data["decision"],
                channel=data["channel"], study_id=data["study"].pk if data["study"] else None, note=data.get("note", ""),
            )
        except services.NoPolicy:
            form.add_error(None, _("No consent policy is published yet."))
        else:
            messages.success(
                request,
                _("Recorded: %(scope)s %(decision)s (%(channel)s), receipt %(receipt)s.")
                % {"scope": decision.get_scope_display(), "decision": decision.get_decision_display(),
                   "channel": decision.get_channel_display(), "receipt": decision.receipt_id},
            )
            return redirect("consent-office-record")
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "consent/office_record.html", {"form": form, "channels": ConsentDecision.Channel}, status=status)

"""The patient's consent pages, the signed receipts, and the privacy office's record form.

Views narrow through ``consent.selectors`` (another patient's receipt or study is a 404) and
change nothing themselves: every choice goes through ``consent.services`` after a fresh
reauthentication (checked here by allauth's decorator and again in the service). Pages that
show the patient's decisions or their access log record one access event each; the consent
overview, like the scans list, records none.
"""

from __future__ import annotations

import json

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.services import record_portal_access
from consent import selectors, services
from consent.forms import ChangeForm, OfficeRecordForm
from consent.models import ConsentDecision, ConsentPolicy
from consent.scopes import SCOPES
from imaging.models import Study


def _patient_or_404(request: HttpRequest):
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        raise Http404("This account has no patient record.")
    return patient


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_for_user(request.user)
    if patient is None:
        return render(request, "consent/home.html", {"patient": None})
    policy, stale = selectors.pending_policy(patient)
    return render(
        request,
        "consent/home.html",
        {"patient": patient, "cards": selectors.consent_cards(patient), "policy": policy, "stale": stale,
         "default": selectors.default_decision(), "has_studies": patient.studies.exists()},
    )


def _study_param(request: HttpRequest, data) -> Study | None:
    """The study named in the form data: one of the patient's own, else a 404 like a missing one."""
    raw = (data.get("study") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit() is true for "²", which int() refuses
        raise Http404("No such study.")
    return selectors.study_for_user(request.user, int(raw))


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required
def change(request: HttpRequest, scope: str) -> HttpResponse:
    """GET: the confirmation of a change (what it means, what it cannot undo). POST: make it."""
    if scope not in SCOPES:
        raise Http404("No such use.")
    patient = _patient_or_404(request)
    data = request.POST if request.method == "POST" else request.GET
    study = _study_param(request, data)
    form = ChangeForm(data or None, patient=patient)
    if request.method == "GET" and form.is_bound and not form.is_valid():
        # A link that names only the study (or nothing valid): ask, without shouting errors.
        form = ChangeForm(initial={"study": study.pk if study else None}, patient=patient)
    if request.method == "POST" and form.is_valid():
        try:
            decision = services.consent_decision_record(
                request=request, scope=scope, decision=form.cleaned_data["decision"], study=study
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
@transaction.atomic
def history(request: HttpRequest) -> HttpResponse:
    patient = _patient_or_404(request)
    decisions = list(selectors.history_for_user(request.user))
    record_portal_access(request, patient=patient, action="view", details={"page": "consent_history"})
    return render(request, "consent/history.html", {"decisions": decisions})


@require_GET
@never_cache
@transaction.atomic
def receipt(request: HttpRequest, receipt_id) -> HttpResponse:
    decision = selectors.decision_for_user(request.user, receipt_id)
    record_portal_access(request, patient=decision.patient, action="view",
                         details={"page": "consent_receipt", "receipt_id": str(decision.receipt_id)})
    return render(request, "consent/receipt.html", {"decision": decision, "body": decision.receipt.get("receipt", {}),
                                                    "signature": decision.receipt.get("signature", {})})


@require_GET
@never_cache
@transaction.atomic
def receipt_json(request: HttpRequest, receipt_id) -> HttpResponse:
    decision = selectors.decision_for_user(request.user, receipt_id)
    record_portal_access(request, patient=decision.patient, action="download",
                         details={"page": "consent_receipt_json", "receipt_id": str(decision.receipt_id)})
    response = HttpResponse(json.dumps(decision.receipt, indent=2, sort_keys=True), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="consent-receipt-{decision.receipt_id}.json"'
    return response


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required(allow_get=True)
def policy(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_for_user(request.user)
    current, stale = selectors.pending_policy(patient) if patient else (selectors.current_policy(), [])
    if request.method == "POST":
        if patient is None:
            raise Http404("This account has no patient record.")
        rows = services.consent_policy_confirm(request=request)
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
@transaction.atomic
def partners(request: HttpRequest) -> HttpResponse:
    patient = _patient_or_404(request)
    rows = selectors.partners_for_user(request.user, patient)
    # The page reads the patient's access log (who used their scans): reading it is logged too.
    record_portal_access(request, patient=patient, action="view", details={"page": "consent_partners"})
    return render(request, "consent/partners.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required
def office_record(request: HttpRequest) -> HttpResponse:
    if not request.user.is_privacy_officer:
        raise Http404("Not found.")
    form = OfficeRecordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            decision = services.consent_decision_record_for_patient(
                request=request, patient=data["patient"], scope=data["scope"], decision=data["decision"],
                channel=data["channel"], study=data["study"], note=data.get("note", ""),
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

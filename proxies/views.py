"""Proxy pages: using a proxy code, the header switcher, and the patient's "People who can act
for me" (docs/security.md §28). Views validate, call one service or selector, and render."""

from __future__ import annotations

from allauth.account.decorators import reauthentication_required
from allauth.account.views import SignupView
from allauth.core.exceptions import RateLimited
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.actor import Kind
from proxies import selectors, services
from proxies.forms import CODE_MISMATCH, EndForm, HeldRedeemForm, InviteForm, ProxySignupForm, RedeemForm, SwitchForm
from proxies.models import ProxyGrant


class ProxySignup(SignupView):
    """allauth's signup (its rate limit, email verification, enumeration protection) with a proxy
    code instead of an activation code: the account has no patient record."""

    template_name = "proxies/signup.html"

    def get_form_class(self):
        return ProxySignupForm

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "request": self.request}


# Public like allauth's signup (tests/portal/test_gate.py PUBLIC): it shows no patient data.
signup = login_not_required(ProxySignup.as_view())


@require_http_methods(["GET", "POST"])
def redeem(request: HttpRequest) -> HttpResponse:
    """A signed-in person (own password and second factor) enters a proxy code, or, when they
    signed up with one, just their name: that held code is redeemed now (docs/security.md §1)."""
    held = services.proxy_code_held(actor=request.actor)
    data = request.POST if request.method == "POST" else None
    form = HeldRedeemForm(data) if held else RedeemForm(data)
    if request.method == "POST" and form.is_valid():
        try:
            if held:
                grant = services.proxy_code_redeem_held(actor=request.actor, **form.cleaned_data)
            else:
                grant = services.proxy_code_redeem(actor=request.actor, **form.cleaned_data)
        except services.ProxyCodeError:
            form.add_error("name" if held else "code", CODE_MISMATCH)
        except RateLimited:
            form.add_error(None, _("Too many attempts. Try again later."))
        else:
            request.session[selectors.SESSION_KEY] = grant.pk
            messages.success(request, _("You can now see %(name)s's records.") % {"name": grant.patient.name})
            return redirect("home")
    context = {"form": form, "held": held}
    return render(request, "proxies/redeem.html", context, status=400 if form.errors else 200)


@require_POST
def switch(request: HttpRequest) -> HttpResponse:
    """Choose whose records this browser shows (kept in the session, checked on every request)."""
    form = SwitchForm(request.POST)
    grant_id = form.cleaned_data["grant"] if form.is_valid() else None
    try:
        grant = services.proxy_switch(actor=request.actor, grant_id=grant_id)
    except PermissionDenied:
        grant = None
        messages.error(request, _("That access has ended."))
    if grant is None:
        request.session.pop(selectors.SESSION_KEY, None)
    else:
        request.session[selectors.SESSION_KEY] = grant.pk
    return redirect("home")


def _patient_only(request: HttpRequest) -> None:
    # Only the patient manages their proxies; a proxy acting for them never does (docs/security.md §28).
    if request.actor.kind != Kind.PATIENT or request.actor.patient_id is None:
        raise Http404("No record.")


@require_http_methods(["GET"])
def people(request: HttpRequest) -> HttpResponse:
    # A person with an account but no record of their own (a parent) sees the way to use a code.
    if request.actor.kind != Kind.PATIENT:
        raise Http404("No record.")
    grants = selectors.proxies_of(actor=request.actor)
    return render(request, "proxies/people.html", {
        "grants": grants, "invites": selectors.invites_pending(actor=request.actor),
        "has_record": request.actor.patient_id is not None, "end_form": EndForm(), "growing_up": services.GROWING_UP,
        "age_restricted": settings.PROXY_AGE_RESTRICTED, "age_end": settings.PROXY_AGE_END,
    })


@require_POST
def end(request: HttpRequest, grant_id: int) -> HttpResponse:
    _patient_only(request)
    form = EndForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        grant = services.proxy_end(actor=request.actor, grant_id=grant_id, reason=reason)
    except ProxyGrant.DoesNotExist:
        raise Http404("No such proxy.") from None
    messages.success(request, _("%(name)s can no longer see your records.") % {"name": grant.proxy_name})
    return redirect("proxies-people")


@require_POST
def agree(request: HttpRequest, grant_id: int) -> HttpResponse:
    """The young person lets their parent or guardian keep seeing the log and consent (or not)."""
    _patient_only(request)
    try:
        services.proxy_young_person_agree(actor=request.actor, grant_id=grant_id, agree=request.POST.get("agree") == "1")
    except ProxyGrant.DoesNotExist:
        raise Http404("No such proxy.") from None
    return redirect("proxies-people")


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required(allow_get=True)
def invite(request: HttpRequest) -> HttpResponse:
    """An adult patient invites someone by email (the password again before it is sent, §6)."""
    _patient_only(request)
    form = InviteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.proxy_invite(actor=request.actor, **form.cleaned_data)
        except services.InviteRefused:
            form.add_error(None, _(
                "Only adults invite people here. A parent or guardian of a young person gets a code from the hospital."
            ))
        else:
            messages.success(request, _("We emailed a code to %(email)s.") % {"email": form.cleaned_data["email"]})
            return redirect("proxies-people")
    return render(request, "proxies/invite.html", {"form": form}, status=400 if form.errors else 200)

from __future__ import annotations

import segno
from allauth.account.views import SignupView
from allauth.core.exceptions import RateLimited
from allauth.core.internal.ratelimit import respond_429
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services, sessions, timezones, webauthn
from accounts.forms import AuthenticatorConfirmForm, CodeForm, RenameFactorForm, TimeZoneForm
from accounts.middleware import second_factor_step
from core.reauth import reauthentication_required, require_recent_reauthentication


@method_decorator(sensitive_post_parameters("password1", "password2", "activation_code", "birth_date"), name="dispatch")
class ActivationSignupView(SignupView):
    def get_form_kwargs(self) -> dict:
        kwargs = super().get_form_kwargs()
        kwargs["request"] = self.request
        return kwargs


signup = ActivationSignupView.as_view()


def _safe_next(request: HttpRequest) -> str:
    """A URL on this host (docs/security.md §11). Always a URL, never a view name: ``redirect()``
    would try to reverse a bare word like ``foo`` and fail with a server error."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("home")


def _render_recovery_codes(request: HttpRequest, codes: list[str], *, first_time: bool) -> HttpResponse:
    return render(request, "accounts/recovery_codes.html", {"codes": codes, "first_time": first_time})


@second_factor_step
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("code")
@never_cache
def enrol(request: HttpRequest) -> HttpResponse:
    """Add an authenticator app: required at first sign-in, optional later (after reauth).

    The key waits in the session (encrypted) until a code confirms it, so a reload shows the same
    QR code and a GET creates no row."""
    user = request.user
    adding = selectors.user_has_confirmed_factor(user)
    if adding and not user.is_verified():
        return redirect("accounts-2fa-verify")
    if adding:
        # On GET too, so the secret is not shown to someone who only has the session.
        require_recent_reauthentication(request, action="authenticator_add")
    key = sessions.pending_key(request)
    if key is None:
        key = services.authenticator_enrolment_start(actor=request.actor)
        sessions.pending_key_keep(request, key)
    form = AuthenticatorConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device, codes = services.authenticator_enrolment_confirm(
                actor=request.actor,
                pending_key=key,
                token=form.cleaned_data["code"],
                name=form.cleaned_data["name"],
                session_verified=user.is_verified(),
                session_key=request.session.session_key,
            )
        except RateLimited:
            return respond_429(request)
        except services.InvalidCode:
            form.add_error("code", _("That code did not match. Check the time on your phone and try the newest code."))
        else:
            sessions.pending_key_drop(request)
            if codes is None:
                messages.success(request, _("Your new authenticator app is ready."))
                return redirect("accounts-security")
            sessions.session_mark_verified(request, device)
            return _render_recovery_codes(request, codes, first_time=True)
    device = selectors.pending_authenticator(user=user, pending_key=key)
    qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=5, dark="#0b1f33", light="#ffffff", omitsize=True)
    secret = device.secret_b32
    return render(
        request,
        "accounts/enrol.html",
        {"form": form, "qr_svg": qr_svg, "secret": secret, "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)], "adding": adding},
    )


@second_factor_step
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("code")
@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    """The second step of sign-in: a code from the app, a recovery code, or a passkey."""
    user = request.user
    if user.is_verified():
        return HttpResponseRedirect(_safe_next(request))
    if not selectors.user_has_confirmed_factor(user):
        return redirect("accounts-2fa-enrol")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = services.second_factor_verify(actor=request.actor, token=form.cleaned_data["code"])
        except RateLimited:
            return respond_429(request)
        except services.InvalidCode:
            form.add_error("code", _("That code did not work. Codes can be used once; wait for the next one."))
        else:
            sessions.session_mark_verified(request, device)
            return HttpResponseRedirect(_safe_next(request))
    has_passkey = selectors.has_passkey(user)
    context = {"form": form, "has_passkey": has_passkey, "next": _safe_next(request) if request.GET.get("next") else ""}
    if has_passkey:
        context["webauthn_config"] = webauthn.client_config(request)
    return render(request, "accounts/verify.html", context)


@require_http_methods(["GET"])
@never_cache
def security(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "accounts/security.html",
        {
            "factors": selectors.sign_in_factors(user),
            "recovery_left": selectors.recovery_codes_left(user),
            "sessions": selectors.signed_in_sessions(user),
            "sign_ins": selectors.recent_sign_ins(user),
            "rename_form": RenameFactorForm(),
            "time_zone_form": _time_zone_form(initial={"time_zone": user.time_zone}),
        },
    )


def _time_zone_form(**kwargs) -> TimeZoneForm:
    return TimeZoneForm(default_label=_("The hospital's time (%(zone)s)") % {"zone": settings.TIME_ZONE}, **kwargs)


@require_POST
def session_end(request: HttpRequest, session_id: int) -> HttpResponse:
    sessions.session_end(actor=request.actor, session_id=session_id, current_key=request.session.session_key)
    messages.success(request, _("That session is signed out."))
    return redirect(_safe_next(request) if request.POST.get("next") else reverse("accounts-security"))


@require_POST
def time_zone(request: HttpRequest) -> HttpResponse:
    form = _time_zone_form(data=request.POST)
    if form.is_valid():
        timezones.time_zone_set(actor=request.actor, time_zone=form.cleaned_data["time_zone"])
        messages.success(request, _("Saved. Times are now shown in this zone."))
    else:
        messages.error(request, _("Choose a time zone from the list."))
    return redirect(reverse("accounts-security") + "#time-zone-heading")


@require_POST
@reauthentication_required("recovery_codes")
@never_cache
def recovery_regenerate(request: HttpRequest) -> HttpResponse:
    codes = services.recovery_codes_regenerate(actor=request.actor, session_key=request.session.session_key)
    return _render_recovery_codes(request, codes, first_time=False)


@require_POST
@reauthentication_required("factor_rename")
def factor_rename(request: HttpRequest, device_id: str) -> HttpResponse:
    device = selectors.factor_for_user(request.user, device_id)
    form = RenameFactorForm(request.POST)
    if form.is_valid():
        services.factor_rename(actor=request.actor, device=device, name=form.cleaned_data["name"])
        messages.success(request, _("Renamed."))
    else:
        messages.error(request, _("Please give a name of up to 64 characters."))
    return redirect("accounts-security")


@require_POST
@reauthentication_required("factor_remove")
def factor_remove(request: HttpRequest, device_id: str) -> HttpResponse:
    device = selectors.factor_for_user(request.user, device_id)
    try:
        services.factor_remove(actor=request.actor, device=device, session_key=request.session.session_key)
    except services.LastFactorError:
        messages.error(request, _("This is your only way to sign in with a second factor. Add another one before removing it."))
    else:
        messages.success(request, _("Removed. Your other sessions were signed out."))
    return redirect("accounts-security")


@require_http_methods(["GET"])
@reauthentication_required("passkey_add")
@never_cache
def passkey_add(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/passkey_add.html", {"webauthn_config": webauthn.client_config(request)})

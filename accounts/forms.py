from __future__ import annotations

from functools import cache
from typing import Any

from allauth.account.forms import SignupForm
from allauth.core.exceptions import RateLimited
from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from accounts import services
from accounts.timezones import zone_choices

ACTIVATION_MISMATCH = _(
    "That activation code and date of birth do not match an unused code. Check the letter from "
    "the hospital, or ask the hospital for a new code."
)


class ActivationSignupForm(SignupForm):
    """allauth's signup with the hospital's activation code and the patient's date of birth.

    The account is created and linked to the patient record in one transaction; the code is
    used up in that same transaction.
    """

    activation_code = forms.CharField(
        label=_("Activation code"),
        max_length=32,
        help_text=_("From your letter from the hospital, like ABCD-EFGH-JKMN."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "characters", "spellcheck": "false"}),
    )
    birth_date = forms.DateField(
        label=_("Date of birth"),
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}),
    )
    field_order = ["activation_code", "birth_date", "email", "password1", "password2"]

    def __init__(self, *args, **kwargs) -> None:
        self.request: HttpRequest | None = kwargs.pop("request", None)
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean()
        code, birth_date = cleaned.get("activation_code"), cleaned.get("birth_date")
        if code and birth_date:
            try:
                services.activation_code_check(actor=self.request.actor, code=code, birth_date=birth_date)
            except services.ActivationError:
                self.add_error("activation_code", ACTIVATION_MISMATCH)
            except RateLimited:
                self.add_error(None, _("Too many attempts. Please wait an hour and try again."))
        return cleaned

    def signup(self, request: HttpRequest, user) -> None:
        services.patient_account_activate(
            user=user, code=self.cleaned_data["activation_code"], birth_date=self.cleaned_data["birth_date"]
        )

    def try_save(self, request: HttpRequest):
        try:
            with transaction.atomic():
                return super().try_save(request)
        except services.ActivationError:
            # Someone used the same code between our check and this save; nothing was created.
            messages.error(request, ACTIVATION_MISMATCH)
            return None, HttpResponseRedirect(reverse("account_signup"))


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True, "spellcheck": "false"}
        ),
        help_text=_("The 6-digit code from your authenticator app, or one of your recovery codes."),
    )


class AuthenticatorConfirmForm(forms.Form):
    code = forms.CharField(
        label=_("6-digit code from the app"),
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"}),
    )
    name = forms.CharField(
        label=_("Name this authenticator"),
        max_length=64,
        required=False,
        initial=_("Authenticator app"),
        help_text=_("For example, the phone it is on."),
    )


class RenameFactorForm(forms.Form):
    name = forms.CharField(label=_("New name"), max_length=64)


@cache
def _zone_options() -> SafeString:
    return format_html_join("", '<option value="{}">{}</option>', zone_choices())


class ZoneSelect(forms.Select):
    """The time-zone ``<select>`` with its six hundred options written once per process.

    Django's ``Select`` renders every ``<option>`` through a template: 97 ms for this list on
    each security page; this marks the chosen option in a cached string instead (same markup
    as Django's, compared in tests/accounts/test_time_zones.py)."""

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> SafeString:
        value = "" if value is None else str(value)
        default = self.choices[0][1] if self.choices else ""
        first = format_html('<option value=""{}>{}</option>', mark_safe(" selected") if not value else "", default)
        options = str(_zone_options())
        if value:
            chosen = str(format_html('<option value="{}">', value))
            options = options.replace(chosen, chosen[:-1] + " selected>", 1)
        # In order, as Django's attrs.html writes them: True bare, False left out.
        final = format_html_join(
            "", " {}{}",
            ((key, "" if val is True else format_html('="{}"', val)) for key, val in self.build_attrs(self.attrs, attrs).items() if val is not False),
        )
        return format_html('<select name="{}"{}>{}{}</select>', name, final, first, mark_safe(options))  # noqa: S308 - options came from format_html_join


class TimeZoneForm(forms.Form):
    """The zone a person reads times in; the choices are the tz database's own list."""

    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        required=False,
        help_text=_("Dates and times on this site and in our emails are shown in this zone."),
        widget=ZoneSelect,
    )

    def __init__(self, *args, default_label: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [("", default_label), *zone_choices()]

from __future__ import annotations

from allauth.account.forms import SignupForm
from allauth.core.exceptions import RateLimited
from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
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


class TimeZoneForm(forms.Form):
    """The zone a person reads times in; the choices are the tz database's own list."""

    time_zone = forms.ChoiceField(
        label=_("Time zone"),
        required=False,
        help_text=_("Dates and times on this site and in our emails are shown in this zone."),
    )

    def __init__(self, *args, default_label: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [("", default_label), *zone_choices()]

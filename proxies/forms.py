from __future__ import annotations

from allauth.account.forms import SignupForm
from allauth.core.exceptions import RateLimited
from django import forms
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from proxies import services
from proxies.models import Relationship, Scope

# The same answer for a wrong code, a wrong date of birth, a used or an expired code.
CODE_MISMATCH = _(
    "That code and date of birth do not match an unused code. Check the code you were given, or "
    "ask for a new one."
)


class RedeemForm(forms.Form):
    code = forms.CharField(
        label=_("Proxy code"), max_length=32, help_text=_("Like ABCD-EFGH-JKMN."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "characters", "spellcheck": "false"}),
    )
    birth_date = forms.DateField(
        label=_("Their date of birth"), help_text=_("The date of birth of the person whose records these are."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    name = forms.CharField(
        label=_("Your name"), max_length=100,
        help_text=_("How they and their access log will name you."),
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )


class HeldRedeemForm(forms.Form):
    """``/proxy/code/`` for an account made with a proxy code: the code and date of birth were
    checked at sign-up, so only the name is asked."""

    name = RedeemForm.base_fields["name"]


class ProxySignupForm(SignupForm):
    """allauth's signup with a proxy code and the patient's date of birth (``/proxy/signup/``),
    for a parent or carer with no record of their own. Checked like ``RedeemForm`` (same rate
    limit, same single answer); the account has no patient record and the code is only held for
    it until it has its second factor (``services.proxy_code_hold``, docs/security.md §1, §28)."""

    proxy_code = forms.CharField(
        label=_("Proxy code"), max_length=32, help_text=_("From the hospital or from the person you care for, like ABCD-EFGH-JKMN."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "characters", "spellcheck": "false"}),
    )
    birth_date = forms.DateField(
        label=_("Their date of birth"), help_text=_("The date of birth of the person whose records these are."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    field_order = ["proxy_code", "birth_date", "email", "password1", "password2"]

    def __init__(self, *args, **kwargs) -> None:
        self.request: HttpRequest | None = kwargs.pop("request", None)
        self.code_id: int | None = None
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean()
        code, birth_date = cleaned.get("proxy_code"), cleaned.get("birth_date")
        if code and birth_date:
            try:
                self.code_id = services.proxy_code_check(actor=self.request.actor, code=code, birth_date=birth_date).pk
            except services.ProxyCodeError:
                self.add_error("proxy_code", CODE_MISMATCH)
            except RateLimited:
                self.add_error(None, _("Too many attempts. Please wait an hour and try again."))
        return cleaned

    def signup(self, request: HttpRequest, user) -> None:
        services.proxy_code_hold(code_id=self.code_id, user_id=user.pk)


class SwitchForm(forms.Form):
    grant = forms.IntegerField(required=False)


class EndForm(forms.Form):
    reason = forms.CharField(label=_("Reason (optional)"), max_length=200, required=False)


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("Their email address"), help_text=_("They get a code by email; they need their own account."))
    relationship = forms.ChoiceField(label=_("They are your"), choices=Relationship.choices, initial=Relationship.CAREGIVER)
    scope = forms.ChoiceField(label=_("What they can do"), choices=Scope.choices, initial=Scope.VIEW, widget=forms.RadioSelect)
    ends_on = forms.DateField(
        label=_("Until (optional)"), required=False, help_text=_("Their access stops after this day. You can end it sooner."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_ends_on(self):
        ends_on = self.cleaned_data.get("ends_on")
        if ends_on is not None and ends_on <= timezone.localdate():
            raise forms.ValidationError(_("Choose a day after today."))
        return ends_on

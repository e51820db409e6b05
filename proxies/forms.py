from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

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


class SwitchForm(forms.Form):
    grant = forms.IntegerField(required=False)


class EndForm(forms.Form):
    reason = forms.CharField(label=_("Reason (optional)"), max_length=200, required=False)

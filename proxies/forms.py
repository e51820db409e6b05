from __future__ import annotations

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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

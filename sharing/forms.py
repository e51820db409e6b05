from __future__ import annotations

from django import forms
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _


class PushForm(forms.Form):
    """Which of the patient's own studies, to which active partner. Patient, status and counts are
    never taken from the form (docs/security.md §10); an id outside the choices is "not a valid
    choice", the same for another patient's study as for a missing one."""

    studies = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label=_("Studies to send"),
                                        error_messages={"required": _("Choose at least one study.")})
    partner = forms.ChoiceField(label=_("Hospital to send them to"), widget=forms.RadioSelect,
                                error_messages={"required": _("Choose a hospital.")})

    def __init__(self, *args, studies=(), partners=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["studies"].choices = [(str(s.pk), self._label(s)) for s in studies]
        self.fields["partner"].choices = [(str(p.pk), p.name) for p in partners]

    @staticmethod
    def _label(study) -> str:
        date = date_format(study.study_date, "DATE_FORMAT") if study.study_date else _("Undated")
        return f"{date} · {study.modalities or '?'} · {study.description or _('Study')}"

    def study_ids(self) -> list[int]:
        return [int(pk) for pk in self.cleaned_data["studies"]]

    def partner_id(self) -> int:
        return int(self.cleaned_data["partner"])


class ShareForm(forms.Form):
    """A share link: which of the patient's own studies, who receives them, for how long and
    whether they may download. The patient and the codes never come from the form
    (docs/security.md §10)."""

    studies = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label=_("Studies to share"),
                                        error_messages={"required": _("Choose at least one study.")})
    recipient_name = forms.CharField(label=_("Doctor's name"), max_length=120)
    recipient_organization = forms.CharField(label=_("Hospital or practice"), max_length=160)
    recipient_email = forms.EmailField(label=_("Doctor's email"), max_length=254,
                                       help_text=_("A one-time code is sent here each time the link is opened."))
    days = forms.IntegerField(label=_("Days the link works"), min_value=1, max_value=30, initial=7)
    access = forms.ChoiceField(label=_("What the doctor may do"), widget=forms.RadioSelect, initial="view",
                               choices=[("view", _("View only")), ("download", _("View and download"))])

    def __init__(self, *args, studies=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["studies"].choices = [(str(s.pk), PushForm._label(s)) for s in studies]

    def study_ids(self) -> list[int]:
        return [int(pk) for pk in self.cleaned_data["studies"]]


class CodeForm(forms.Form):
    code = forms.CharField(label=_("Access code"), max_length=40, strip=True,
                           widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}))


class OtpForm(forms.Form):
    otp = forms.CharField(label=_("Code from the email"), max_length=20, strip=True,
                          widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))

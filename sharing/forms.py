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

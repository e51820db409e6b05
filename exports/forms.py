from __future__ import annotations

from django import forms
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _


class ExportRequestForm(forms.Form):
    """Only the choices the patient owns: which of their studies, and which kind of copy.
    Patient, status and limits are never taken from the form (docs/security.md §10)."""

    KIND_CHOICES = [
        ("original", _("Original: exactly as the hospital stores them, with your name and details")),
        ("deidentified", _("De-identified: names, ID numbers, dates of birth and addresses removed")),
    ]

    scope = forms.ChoiceField(
        choices=[("all", _("All my studies")), ("selected", _("Only the studies I tick below"))],
        initial="all", widget=forms.RadioSelect, label=_("Which studies"),
    )
    studies = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label=_("Studies"))
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="original", widget=forms.RadioSelect, label=_("Kind of copy"))

    def __init__(self, *args, studies=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["studies"].choices = [(str(s.pk), self._label(s)) for s in studies]

    @staticmethod
    def _label(study) -> str:
        date = date_format(study.study_date, "DATE_FORMAT") if study.study_date else _("Undated")
        return f"{date} · {study.modalities or '?'} · {study.description or _('Study')}"

    def clean(self):
        data = super().clean()
        if data.get("scope") == "selected" and not data.get("studies"):
            raise forms.ValidationError(_("Tick at least one study, or choose all studies."))
        return data

    def study_ids(self) -> list[int] | None:
        if self.cleaned_data["scope"] == "all":
            return None
        return [int(pk) for pk in self.cleaned_data["studies"]]

    @property
    def deidentify(self) -> bool:
        return self.cleaned_data["kind"] == "deidentified"

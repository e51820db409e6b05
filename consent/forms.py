"""Forms for the consent pages and the privacy office's paper/phone record."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from consent.models import ConsentDecision, Scope
from core.actor import Actor
from imaging.models import Patient, Study


class ChangeForm(forms.Form):
    """Yes or no for one scope, for all studies or (an exception) one of the patient's own."""

    decision = forms.ChoiceField(
        label=_("Your choice"), choices=ConsentDecision.Decision.choices, widget=forms.RadioSelect
    )
    study = forms.ModelChoiceField(
        label=_("Which scans"), queryset=Study.objects.none(), required=False,
        empty_label=_("All my scans"),
        help_text=_("Choose one scan to make an exception for it alone; your choice for all other scans stays as it is."),
    )

    def __init__(self, *args, actor: Actor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the studies the actor reaches (the patient's own): another patient's id is "not a
        # valid choice".
        self.fields["study"].queryset = Study.objects.for_actor(actor).order_by("-study_date", "-pk")
        self.fields["study"].label_from_instance = lambda s: f"{s.study_date or _('Undated')} · {s.description or s.modalities or _('Imaging study')}"


class OfficeRecordForm(forms.Form):
    """A decision the patient gave on a paper form or by phone, entered by the privacy office."""

    issuer = forms.CharField(label=_("Issuer of the MRN"), max_length=64)
    mrn = forms.CharField(label=_("MRN"), max_length=64)
    scope = forms.ChoiceField(label=_("Use"), choices=Scope.choices)
    decision = forms.ChoiceField(label=_("The patient's choice"), choices=ConsentDecision.Decision.choices, widget=forms.RadioSelect)
    channel = forms.ChoiceField(
        label=_("How the patient told us"),
        choices=[(ConsentDecision.Channel.PAPER, _("Paper form")), (ConsentDecision.Channel.PHONE, _("Phone call"))],
        widget=forms.RadioSelect,
    )
    study_uid = forms.CharField(label=_("Study Instance UID (for one study only)"), max_length=64, required=False)
    note = forms.CharField(label=_("Form reference or call note"), max_length=200, required=False)

    def clean(self) -> dict:
        data = super().clean()
        issuer, mrn = data.get("issuer", "").strip(), data.get("mrn", "").strip()
        if issuer and mrn:
            patient = Patient.objects.filter(issuer=issuer, mrn=mrn).first()
            if patient is None:
                raise forms.ValidationError(_("No patient with this issuer and MRN."))
            data["patient"] = patient
            uid = data.get("study_uid", "").strip()
            data["study"] = None
            if uid:
                data["study"] = Study.objects.filter(patient=patient, study_uid=uid).first()
                if data["study"] is None:
                    self.add_error("study_uid", _("This patient has no study with this UID."))
        return data

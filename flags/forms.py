"""Forms for flags. Each declares only the fields it owns: the patient, study, status and
assignee of a flag come from the URL and the selectors, never from posted data (docs/security.md §10)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from flags.models import Flag
from flags.selectors import QueueFilters
from flags.services import EVENT_CATEGORIES, STUDY_CATEGORIES

TEXT_MAX = 4000


class FlagForm(forms.Form):
    category = forms.ChoiceField(label=_("What looks wrong?"), widget=forms.RadioSelect)
    description = forms.CharField(
        label=_("Tell us more"),
        help_text=_("What you noticed, in your own words. Text only; please do not include passwords."),
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 6}),
    )

    def __init__(self, *args, target: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        allowed = STUDY_CATEGORIES if target == "study" else EVENT_CATEGORIES
        self.fields["category"].choices = [(c.value, c.label) for c in allowed]


class ReplyForm(forms.Form):
    text = forms.CharField(label=_("Your reply"), max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 5}))


class NoteForm(forms.Form):
    text = forms.CharField(
        label=_("Internal note"), help_text=_("Only the privacy office sees notes."), max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
    )


class MessageForm(forms.Form):
    text = forms.CharField(
        label=_("Message to the patient"),
        help_text=_("The patient reads this in the portal. Write plainly; avoid jargon."),
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    ask_for_info = forms.BooleanField(label=_("Ask the patient for more information (they can reply)"), required=False)


class StatusForm(forms.Form):
    status = forms.ChoiceField(label=_("New status"), choices=Flag.office_status_choices)
    resolution = forms.CharField(
        label=_("Outcome for the patient"),
        help_text=_("Required when resolving or dismissing. The patient reads this."),
        max_length=TEXT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
    )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(label=_("Assign to"), queryset=None, empty_label=None)

    def __init__(self, *args, **kwargs) -> None:
        from flags.selectors import officer_list

        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = officer_list()
        # Officers are named to each other as the log names them, never by email (User.public_name).
        self.fields["assignee"].label_from_instance = lambda user: user.public_name


class IncidentForm(forms.Form):
    organization = forms.CharField(label=_("Accessor organisation"), max_length=200, required=False)
    limit_to_study = forms.BooleanField(label=_("Only accesses to this flag's study"), required=False)
    window_start = forms.DateTimeField(label=_("From"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    window_end = forms.DateTimeField(label=_("Until"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    subject = forms.CharField(label=_("Subject"), max_length=150)
    message = forms.CharField(
        label=_("Message to the affected patients"),
        help_text=_("Sent in the portal and by email: no clinical detail, no names."),
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 6}),
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("window_start"), data.get("window_end")
        if start and end and end < start:
            raise forms.ValidationError(_("The time window ends before it starts."))
        if not (data.get("organization") or "").strip() and not data.get("limit_to_study"):
            raise forms.ValidationError(_("Choose an organisation, this study, or both."))
        return data


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"), required=False,
        choices=[("active", _("Not closed")), ("all", _("All")), *Flag.office_status_choices()],
    )
    category = forms.ChoiceField(label=_("Category"), required=False, choices=[("", _("All")), *Flag.Category.choices])
    assignee = forms.ChoiceField(label=_("Held by"), required=False)
    age = forms.ChoiceField(
        label=_("Age"), required=False,
        choices=[("", _("Any")), ("7", _("Older than 7 days")), ("14", _("Older than 14 days")), ("30", _("Older than 30 days"))],
    )
    overdue = forms.BooleanField(label=_("Overdue only"), required=False)
    sort = forms.ChoiceField(
        label=_("Sort by"), required=False,
        choices=[("due", _("Due date")), ("newest", _("Newest")), ("oldest", _("Oldest")), ("updated", _("Recently updated"))],
    )

    def __init__(self, *args, **kwargs) -> None:
        from flags.selectors import officer_list

        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [
            ("", _("Anyone")), ("me", _("Me")), ("none", _("Nobody yet")), *((str(o.pk), o.public_name) for o in officer_list())
        ]

    def filters(self) -> QueueFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return QueueFilters(
            status=data.get("status") or "active",
            category=data.get("category") or "",
            assignee=data.get("assignee") or "",
            older_than_days=int(data["age"]) if data.get("age") else None,
            overdue=bool(data.get("overdue")),
            sort=data.get("sort") or "due",
        )


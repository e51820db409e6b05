from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from audit.models import AccessEvent, NotificationPreference
from audit.selectors import SHOW_ALL, SHOW_OWN, LogFilters

ANY = [("", _("Any"))]
# Dates before this are typing mistakes, not real history; keeps the query bounds sane.
EARLIEST = dt.date(1900, 1, 1)


def _attrs(attrs: dict[str, Any]) -> SafeString:
    """Attributes as Django's ``attrs.html`` writes them: in order, True bare, False left out."""
    return format_html_join(
        "", " {}{}",
        ((name, "" if value is True else format_html('="{}"', value)) for name, value in attrs.items() if value is not False),
    )


class QuickSelect(forms.Select):
    """A ``<select>`` drawn in Python, with the markup of Django's own (``select.html`` and
    ``select_option.html``, without option groups, which these filters have none of).

    Written by hand because Django renders every ``<option>`` through a template of its own: the
    log's five select boxes cost about fifty template renders per page, a good part of the page's
    time (issue 18). tests/audit/test_log_page_queries.py compares the markup with Django's.
    """

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> SafeString:
        widget = self.get_context(name, value, attrs)["widget"]
        options = format_html_join(
            "", '<option value="{}"{}>{}</option>',
            ((option["value"], _attrs(option["attrs"]), option["label"])
             for _group, group_options, _index in widget["optgroups"] for option in group_options),
        )
        return format_html('<select name="{}"{}>{}</select>', widget["name"], _attrs(widget["attrs"]), options)


class AccessLogFilterForm(forms.Form):
    """The access log's filters (GET). Choices for organisation and study come from the
    patient's own log and studies, so a crafted value cannot reach anything else."""

    show = forms.ChoiceField(
        label=_("Whose actions"),
        required=False,
        choices=[
            ("", _("Accesses by others")),
            (SHOW_OWN, _("Your own actions (one line per day)")),
            (SHOW_ALL, _("Everything, yours included")),
        ],
        widget=QuickSelect,
    )
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    organization = forms.ChoiceField(label=_("Organisation"), required=False, widget=QuickSelect)
    actor_type = forms.ChoiceField(
        label=_("Who"), required=False, choices=ANY + list(AccessEvent.ActorType.choices), widget=QuickSelect
    )
    purpose = forms.ChoiceField(
        label=_("Why"), required=False, choices=ANY + list(AccessEvent.Purpose.choices), widget=QuickSelect
    )
    action = forms.ChoiceField(
        label=_("What they did"), required=False, choices=ANY + list(AccessEvent.Action.choices), widget=QuickSelect
    )
    study = forms.ChoiceField(label=_("Scan"), required=False, widget=QuickSelect)

    def __init__(self, *args: Any, choices: dict[str, list[tuple[str, str]]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = ANY + choices["organization"]
        self.fields["study"].choices = ANY + choices["study"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        for name in ("since", "until"):
            if data.get(name) and not EARLIEST <= data[name] <= dt.date(9000, 1, 1):
                self.add_error(name, _("Enter a date after 1900."))
        if since and until and since > until:
            self.add_error("until", _("The end date must be on or after the start date."))
        return data

    @property
    def active(self) -> bool:
        return self.is_bound and any(self.data.get(name) for name in self.fields)

    @property
    def narrows(self) -> bool:
        """Whether a filter other than "whose actions" is set (the list says "Filters on")."""
        return self.is_bound and any(self.data.get(name) for name in self.fields if name != "show")

    def filters(self) -> LogFilters:
        """The validated filters (none when the form is invalid or empty)."""
        if not self.is_valid():
            return LogFilters()
        data = self.cleaned_data
        return LogFilters(
            since=data.get("since"), until=data.get("until"), organization=data.get("organization") or "",
            actor_type=data.get("actor_type") or "", purpose=data.get("purpose") or "",
            action=data.get("action") or "", study_id=int(data["study"]) if data.get("study") else None,
            show=data.get("show") or "",
        )


class NotificationPreferenceForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = ["new_organization", "ai_or_research", "emergency", "downloads"]

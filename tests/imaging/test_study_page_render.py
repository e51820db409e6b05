"""The study page's rendering shortcuts say exactly what the template nodes they replace said
(issue 18: "What this scan reveals" is most of the page's rendering for a real study)."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.test import override_settings

# What templates/imaging/_reveal.html rendered per row before ``per_series`` (one
# ``{% blocktranslate %}`` per series).
BEFORE = Template(
    "{% load i18n %}{% for label, found, total in entries %}"
    "<li>{{ label }}: {% blocktranslate %}{{ found }} of {{ total }}{% endblocktranslate %}</li>{% endfor %}"
)
AFTER = Template("{% load imaging_terms %}{% per_series entries %}")

ENTRIES = [
    ("Series 2 · CT", 3, 20),
    ('Series 1 · <script>alert("x")</script> & co', 0, 1),
    ("Series 3 · MR", 12345, 1234567),
    ("Series", None, ""),
]


@pytest.mark.parametrize("separator", [False, True])
def test_per_series_renders_what_the_blocktranslate_rendered(separator):
    with override_settings(USE_THOUSAND_SEPARATOR=separator):
        context = {"entries": ENTRIES}
        after = AFTER.render(Context(context))
        assert after == BEFORE.render(Context(context))
    assert "<script>" not in after and "&lt;script&gt;" in after
    assert ("12,345 of 1,234,567" if separator else "12345 of 1234567") in after


def test_per_series_of_no_entries_is_empty():
    assert AFTER.render(Context({"entries": []})) == ""

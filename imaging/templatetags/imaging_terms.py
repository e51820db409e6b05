"""Template filters that put DICOM's capitals and codes in plain words (``imaging.dicom.terms``).

Django imports every template tag library when its template engine starts, in every process
(the export worker too), so ``imaging.dicom`` (pydicom) is imported inside the filters, only
when a page uses them.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.utils.formats import localize
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def plain_text(value: str) -> str:
    """A description in plain case, as text (for ``<title>`` and attributes)."""
    from imaging.dicom import terms

    return terms.plain_description(str(value or ""))


@register.filter
def plain(value: str) -> SafeString:
    """A description in plain case, with the text as recorded in its ``title`` (shown on hover)
    when the two differ. Both are escaped: a description is untrusted text from a file."""
    from imaging.dicom import terms

    original = str(value or "")
    shown = terms.plain_description(original)
    if shown == original.strip():
        return format_html("{}", original)
    return format_html('<span class="as-recorded" title="{}">{}</span>',
                       _("As recorded: %(text)s") % {"text": original}, shown)


@register.filter
def modality_abbrs(value: str) -> SafeString:
    """Modality codes ("CT,PT") as ``<abbr>`` elements with their meaning from DICOM's code
    dictionary; an unknown code is shown as it is."""
    from imaging.dicom import terms

    codes = terms.modality_codes(str(value or ""))
    return format_html_join(
        ", ", "{}", ((_abbr(code, terms.modality_meaning(code)),) for code in codes)
    )


def _abbr(code: str, meaning: str) -> SafeString:
    if not meaning:
        return format_html("{}", code)
    return format_html('<abbr title="{}">{}</abbr>', meaning, code)


@register.simple_tag
def modality_glossary(*values: Any) -> list[dict[str, str]]:
    """The modality codes in ``values`` (a study's ``modalities`` string, or a list of studies),
    each with DICOM's meaning and a plain sentence: the "what the letters mean" list."""
    from imaging.dicom import terms

    codes: list[str] = []
    for value in values:
        items = [value] if isinstance(value, str) else list(value or [])
        for item in items:
            text = item if isinstance(item, str) else getattr(item, "modalities", "")
            codes.extend(terms.modality_codes(str(text or "")))
    return [
        {"code": code, "meaning": terms.modality_meaning(code), "plain": terms.modality_plain(code)}
        for code in dict.fromkeys(codes)
        if terms.modality_plain(code)
    ]


@register.simple_tag
def per_series(entries: Any) -> SafeString:
    """The "In which files" list of a row of "What this scan reveals": one ``<li>`` per
    (series label, files with it, files) entry, "Series 2 · CT: 3 of 20".

    In Python rather than a ``{% blocktranslate %}`` per entry: a study's report has dozens of
    rows of a few series each, and those nodes were the largest part of the study page's
    rendering (issue 18). The same message ("%(found)s of %(total)s", as ``blocktranslate``
    makes it), numbers localized, label escaped."""
    message = _("%(found)s of %(total)s")
    return format_html_join(
        "", "<li>{}: {}</li>",
        ((label, mark_safe(message % {"found": _number(found), "total": _number(total)}))  # noqa: S308 - escaped
         for label, found, total in entries),
    )


def _number(value: Any) -> str:
    """``{{ value }}`` in a template (localized, escaped). A whole number without thousand
    separators is its digits, as ``django.utils.numberformat.format`` returns it, without the
    three format look-ups of ``localize`` that cost more than the rest of a row."""
    if type(value) is int and not settings.USE_THOUSAND_SEPARATOR:
        return str(value)
    return conditional_escape(localize(value))

"""CSV that a spreadsheet opens as data, never as formulas (CSV injection; docs/security.md §10).

Written by hand because the maintained guard, ``defusedcsv``, looks only at each field's first
character: a value such as ``;=cmd|' /C calc'!A0;`` passes it, and a spreadsheet whose list
separator is ``;`` (most of Europe) splits that field and runs the second half as a formula.
Here every field is quoted, and a formula character is defused wherever a cell could start:
at the start of the field or right after any character some spreadsheet treats as a separator
(comma, semicolon, tab, pipe, line break), leading spaces and quotes skipped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator

# OWASP's formula starters (= + - @, tab and CR), and their full-width forms, which some
# spreadsheets fold to ASCII before deciding what a cell is.
_FORMULA = "=+\\-@\uff1d\uff0b\uff0d\uff20"
_CELL_START = re.compile(rf"(^|[,;\t|\r\n])([\s\"']*)([{_FORMULA}])")


def safe_cell(value: object) -> str:
    """The text of ``value`` with a ``'`` before every formula character that could begin a cell."""
    text = "" if value is None else str(value)
    text = _CELL_START.sub(lambda m: f"{m[1]}{m[2]}'{m[3]}", text)
    if text[:1] in ("\t", "\r"):
        text = "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """A UTF-8 CSV document, line by line (for ``StreamingHttpResponse``): a BOM so spreadsheet
    programs read names correctly, the header, then the rows; every field quoted and defused."""
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield "\ufeff"
    yield writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        yield writer.writerow([safe_cell(v) for v in row])

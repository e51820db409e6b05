"""CSV handed to spreadsheets: every field quoted, no cell a spreadsheet could run (docs/security.md §25)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from core.spreadsheet import csv_lines, safe_cell

FORMULA_START = tuple("=+-@\uff1d\uff0b\uff0d\uff20")
SEPARATORS = (",", ";", "\t", "|")
# The payload: fine at its first character, a formula in a ';'-separated spreadsheet.
SEMICOLON_PAYLOAD = ";=cmd|' /C calc'!A0;"


def cells_a_spreadsheet_could_see(document: str) -> list[str]:
    """Every cell the document could become: parsed as CSV with each common separator, and split
    naively (a program that ignores quotes), leading spaces and quote marks dropped."""
    cells = []
    for separator in SEPARATORS:
        cells += [c for row in csv.reader(io.StringIO(document, newline=""), delimiter=separator) for c in row]
        for line in document.splitlines():
            cells += line.split(separator)
    return [c.lstrip(" \t\r\n\"") for c in cells]


def document(values: list[str]) -> str:
    return "".join(csv_lines(["a"] * len(values), [values])).lstrip("\ufeff")


def test_the_semicolon_payload_is_no_formula_whatever_the_separator():
    text = document(["Dr Smith", SEMICOLON_PAYLOAD, "ok"])
    bad = [c for c in cells_a_spreadsheet_could_see(text) if c.startswith(FORMULA_START)]
    assert bad == []


def test_every_field_is_quoted_and_ordinary_values_are_untouched():
    text = document(["2026-12-04T10:00:00+00:00", "CT chest - with contrast", "", "42"])
    assert text.splitlines()[1] == '"2026-12-04T10:00:00+00:00","CT chest - with contrast","","42"'


def test_formula_starts_are_defused_where_a_cell_could_begin():
    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("  @SUM(A1)") == "  '@SUM(A1)"
    assert safe_cell("a, -2+3") == "a, '-2+3"
    assert safe_cell("x\n+y") == "x\n'+y"
    assert safe_cell("\tplain") == "'\tplain"
    assert safe_cell("\uff1dcmd") == "'\uff1dcmd"
    assert safe_cell(None) == ""


@given(st.lists(st.text(alphabet=st.sampled_from("=+-@;,|\t\r\n \"'ab1\uff1d"), max_size=12), min_size=1, max_size=4))
def test_no_value_ever_yields_a_formula_cell(values):
    text = document(values)
    assert not [c for c in cells_a_spreadsheet_could_see(text) if c.startswith(FORMULA_START)]
    # Quoting round-trips: a program that honours quotes reads back exactly the defused values.
    assert next(csv.reader(io.StringIO(text.split("\r\n", 1)[1], newline=""))) == [safe_cell(v) for v in values]

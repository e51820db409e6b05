"""Presentation: the report turned into labelled, translated groups for a template."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _t
from django.utils.translation import ngettext

from imaging.dicom.reveal.labels import GROUPS, label_for
from imaging.dicom.reveal.pixels import PIXEL_KINDS, _images, _pixel_sentence

# --- Presentation ------------------------------------------------------------------------------


@dataclass
class Item:
    label: str
    tag: str
    values: list[str]
    more: int
    total: int
    per_series: list[tuple[str, int, int]]  # (series label, files with it, files in series)
    note: str = ""  # shown instead of values when there are none ("present, binary data")


@dataclass
class Group:
    key: str
    title: str
    explanation: str
    items: list[Item]
    files: int  # files in which anything of this group was found
    note: str = ""


def _per_series(counts: dict[str, int], series_files: dict[str, int], labels: dict[str, str]) -> list[tuple[str, int, int]]:
    return [(labels.get(k, k), counts.get(k, 0), n) for k, n in series_files.items() if counts.get(k, 0)]


def _pixel_items(pixels: dict, series_files: dict[str, int], labels: dict[str, str]) -> tuple[list[Item], int]:
    """The "Text on the image itself" sentences from OCR results, most revealing first."""
    items: list[Item] = []
    modalities = pixels.get("modalities", {})

    def mods(counts: dict[str, int]) -> set[str]:
        return {m for key in counts for m in modalities.get(key, [])}

    def add(label: str, counts: dict[str, int], values: list[str] | None = None) -> None:
        items.append(Item(label, "", list(values or []), 0, sum(counts.values()), _per_series(counts, series_files, labels)))

    kinds = pixels.get("kinds", {})
    for kind in (*PIXEL_KINDS, *sorted(k for k in kinds if k not in PIXEL_KINDS and k != "text")):
        counts = kinds.get(kind)
        if counts:
            add(_pixel_sentence(kind, _images(sum(counts.values()), mods(counts))), counts, pixels.get("texts", {}).get(kind))
    found = pixels.get("found", {})
    if found:
        n = sum(found.values())
        add(_t("Text was found on %(images)s.") % {"images": _images(n, mods(found))}, found, pixels.get("texts", {}).get("text"))
    failed = pixels.get("failed", {})
    if failed:
        n = sum(failed.values())
        add(ngettext("%(images)s could not be checked for text.", "%(images)s could not be checked for text.", n)
            % {"images": _images(n, mods(failed))}, failed, pixels.get("reasons"))
    unchecked = pixels.get("unchecked", {})
    if unchecked:
        n = sum(unchecked.values())
        add(ngettext("%(images)s has not been checked for text yet.", "%(images)s have not been checked for text yet.", n)
            % {"images": _images(n, mods(unchecked))}, unchecked)
    none = pixels.get("none", {})
    if none:
        n = sum(none.values())
        add(_t("No text was found on %(images)s.") % {"images": _images(n, mods(none))}, none)
    return items, sum(found.values())


def present(report: dict, series_labels: dict[str, str], *, pixels: dict | None = None,
            faces: dict[str, int] | None = None) -> list[Group]:
    """Groups in reading order, with translated labels and per-series counts.

    ``pixels`` is :func:`pixel_summary` of the study's OCR results and ``faces`` maps the
    series that are head volumes to their number of images; both come from the database (the
    header report is cached, they change without the files changing).
    """
    series_files: dict[str, int] = report["series_files"]
    out: list[Group] = []
    for key, (title, explanation) in GROUPS.items():
        items: list[Item] = []
        files_with = 0
        note = ""
        for entry in report["groups"].get(key, []):
            total = sum(entry["counts"].values())
            files_with = max(files_with, total)
            shown = "" if entry["values"] else _t("Present (no text to show)")
            items.append(
                Item(label_for(entry["key"]), entry["tag"], entry["values"], entry["more"], total,
                     _per_series(entry["counts"], series_files, series_labels), shown)
            )
        if key == "private":
            priv = report["private"]
            if priv["elements"]:
                total = sum(priv["counts"].values())
                values = priv["creators"] or []
                items.append(Item(_t("Private fields"), "", values, 0, total, _per_series(priv["counts"], series_files, series_labels)))
                files_with = max(files_with, total)
                note = ngettext(
                    "%(n)d private field in all; their contents are not shown here unless they hold a name or your patient ID.",
                    "%(n)d private fields in all; their contents are not shown here unless they hold a name or your patient ID.",
                    priv["elements"],
                ) % {"n": priv["elements"]}
        elif key == "uids" and items:
            n = report.get("uid_count", 0)
            note = ngettext(
                "%(n)d unique identifier in all; a few are shown.",
                "%(n)d unique identifiers in all; a few are shown.",
                n,
            ) % {"n": n}
        elif key == "burned_in":
            pixel_items, found = _pixel_items(pixels or {}, series_files, series_labels)
            items.extend(pixel_items)
            labels = {
                "yes": _t("Marked as having text on the image"),
                "no": _t("Marked as having no text on the image"),
                "unstated": _t("Not stated in the file"),
            }
            for state in ("yes", "no", "unstated"):
                counts = report["burned_in"].get(state, {})
                if counts:
                    items.append(Item(labels[state], "(0028,0301)", [], 0, sum(counts.values()), _per_series(counts, series_files, series_labels)))
            files_with = max(found, sum(report["burned_in"].get("yes", {}).values()))
            recognizable = report["recognizable"].get("yes", {})
            if recognizable:
                items.append(Item(_t("Marked as showing recognisable features (such as a face)"), "(0028,0302)", [], 0, sum(recognizable.values()), _per_series(recognizable, series_files, series_labels)))
        elif key == "face" and faces:
            per = [(series_labels.get(k, k), n, series_files.get(k, n)) for k, n in faces.items()]
            total = sum(faces.values())
            items.append(Item(_t("A face can be rebuilt from this head scan"), "", [], 0, total, per))
            files_with = total
            note = _t("Lightbox's de-identified copies remove names and numbers from the files, but they do not remove "
                      "the face from the pictures (they are not 'defaced'). Share a head scan as carefully as your name.")
        if items:
            out.append(Group(key, str(title), str(explanation), items, files_with, note))
    return out

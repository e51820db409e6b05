"""Text in the pixels (OCR results from the database, beside the cached header report)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from imaging.dicom.reveal.report import MAX_VALUE_CHARS, MAX_VALUES

# --- Text in the pixels and faces (from the database, beside the cached header report) ----------

# OCR kinds (imaging.models.PixelText.kinds) in the order a patient should read them.
PIXEL_KINDS = ("name", "patient_id", "birth_date", "accession", "date", "institution")
# Fewer than this many characters read from a picture is noise, not text worth quoting.
MIN_PIXEL_TEXT = 2


@dataclass(frozen=True)
class PixelRow:
    """One image instance's OCR state, as ``imaging.selectors`` reads it from the database."""

    series_key: str
    modality: str
    status: str  # "found", "none", "not_checked", or "" when OCR has not run yet
    kinds: tuple[str, ...] = ()
    texts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (text read, its kinds) per region
    reason: str = ""


def pixel_summary(rows: Iterable[PixelRow]) -> dict:
    """Count, per series, the images whose pixels show each kind of identifier, those with text,
    without, that could not be checked and that are not checked yet. A plain dict (like the
    header report) so :func:`present` can be tested without a database."""
    summary: dict[str, Any] = {"kinds": {}, "texts": {}, "found": {}, "none": {}, "failed": {}, "unchecked": {},
                               "reasons": [], "modalities": {}}

    def bump(bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1

    for row in rows:
        mods = summary["modalities"]
        if row.modality and row.modality not in mods.setdefault(row.series_key, []):
            mods[row.series_key].append(row.modality)
        if row.status == "found":
            bump(summary["found"], row.series_key)
            for kind in dict.fromkeys(row.kinds):
                bump(summary["kinds"].setdefault(kind, {}), row.series_key)
            for text, kinds in row.texts:
                text = " ".join(str(text).split())[:MAX_VALUE_CHARS]
                if len(text) < MIN_PIXEL_TEXT:
                    continue
                for kind in kinds or ("text",):
                    shown = summary["texts"].setdefault(kind, [])
                    if text not in shown and len(shown) < MAX_VALUES:
                        shown.append(text)
        elif row.status == "none":
            bump(summary["none"], row.series_key)
        elif row.status == "not_checked":
            bump(summary["failed"], row.series_key)
            if row.reason and row.reason not in summary["reasons"] and len(summary["reasons"]) < MAX_VALUES:
                summary["reasons"].append(row.reason)
        else:
            bump(summary["unchecked"], row.series_key)
    return summary


def _images(n: int, modalities: set[str]) -> str:
    """'30 ultrasound images', '1 CT image', '12 images' (the kind only when there is one)."""
    modality = next(iter(modalities)) if len(modalities) == 1 else ""
    if modality == "US":
        return ngettext("%(n)d ultrasound image", "%(n)d ultrasound images", n) % {"n": n}
    if modality == "CT":
        return ngettext("%(n)d CT image", "%(n)d CT images", n) % {"n": n}
    if modality == "MR":
        return ngettext("%(n)d MRI image", "%(n)d MRI images", n) % {"n": n}
    if modality in {"CR", "DX", "RF", "XA"}:
        return ngettext("%(n)d X-ray image", "%(n)d X-ray images", n) % {"n": n}
    if modality == "MG":
        return ngettext("%(n)d mammography image", "%(n)d mammography images", n) % {"n": n}
    if modality == "NM" or modality == "PT":
        return ngettext("%(n)d nuclear medicine image", "%(n)d nuclear medicine images", n) % {"n": n}
    if modality in {"SC", "OT", "DOC"}:
        return ngettext("%(n)d scanned or captured image", "%(n)d scanned or captured images", n) % {"n": n}
    return ngettext("%(n)d image", "%(n)d images", n) % {"n": n}


def _pixel_sentence(kind: str, images: str) -> str:
    sentences = {
        "name": _("Your name is printed on %(images)s."),
        "patient_id": _("Your hospital number is printed on %(images)s."),
        "birth_date": _("Your date of birth is printed on %(images)s."),
        "accession": _("The scan's order (accession) number is printed on %(images)s."),
        "date": _("A date is printed on %(images)s."),
        "institution": _("The hospital's name is printed on %(images)s."),
    }
    sentence = sentences.get(kind, _("Text of another kind is printed on %(images)s."))
    return str(sentence) % {"images": images}

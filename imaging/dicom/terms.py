"""DICOM's capitals and codes in plain words: study and series descriptions, modality codes.

- ``modality_meaning``: the formal meaning of a modality code ("CT" -> "Computed Tomography"),
  read from the DICOM code dictionaries pydicom ships (CID 33 "Modality" and CID 29
  "Acquisition Modality"), never from a hand-copied table.
- ``modality_plain``: one plain sentence for the modalities a patient commonly meets. That is
  product copy, not the standard: DICOM's meanings ("Radiofluoroscopy") do not tell a patient
  what happened to them, so these sentences are written here and reviewed like any page text.
- ``plain_description``: "CT CHEST W CONTRAST" -> "CT chest with contrast". Scanners and
  worklists write descriptions in capitals with radiology shorthand; the shorthand list below is
  short and hand-written for the same reason (no maintained machine-readable source exists for
  worklist abbreviations, and each entry is one a patient would otherwise not understand).

Pure functions of strings; nothing here reads a file or a patient's data beyond the text given.
"""

from __future__ import annotations

import functools
import re

from django.utils.translation import gettext_lazy as _

# Product copy (see the module docstring): what a patient needs to know about each common kind
# of scan, in one sentence. Codes not listed fall back to DICOM's formal meaning.
_PLAIN = {
    "CT": _("Computed tomography: a CT scan, X-rays taken from many angles and put together into slices."),
    "MR": _("Magnetic resonance imaging (MRI): pictures made with a strong magnet and radio waves, no X-rays."),
    "DX": _("Digital X-ray: a single X-ray picture, such as a chest X-ray."),
    "CR": _("Computed radiography: an X-ray picture taken on a reusable plate and read by a scanner."),
    "US": _("Ultrasound: pictures made with sound waves, often as short moving clips."),
    "PT": _("PET scan: a small amount of a tracer shows how active different tissues are."),
    "NM": _("Nuclear medicine: a small amount of a tracer is followed with a special camera."),
    "MG": _("Mammography: an X-ray of the breast."),
    "XA": _("X-ray angiography: X-ray pictures of blood vessels, taken with a contrast dye."),
    "RF": _("Fluoroscopy: a live X-ray video, often while you swallow or are given a contrast dye."),
    "OT": _("Other: an image the scanner did not label with one of the usual kinds."),
    "SR": _("Structured report: the written report about the scan, stored with the images."),
    "DOC": _("Document: a document stored with the images, such as a scanned form or a PDF report."),
    "KO": _("Key images: a list of the images the radiologist marked as important."),
    "PR": _("Display settings: how the images were shown (zoom, contrast, notes) when they were read."),
    "SEG": _("Segmentation: outlines of body parts drawn on the images, by a person or software."),
    "IO": _("Dental X-ray taken inside the mouth."),
    "PX": _("Panoramic dental X-ray of the whole jaw."),
    "ES": _("Endoscopy: pictures taken with a small camera inside the body."),
    "ECG": _("Electrocardiogram (ECG): a recording of the heart's electrical activity."),
}

# Radiology shorthand in descriptions (hand-written, see the module docstring). Matched as whole
# words of a description written in capitals; C+ / C- are contrast given / not given.
_SHORTHAND = {
    "W": "with",
    "WO": "without",
    "W/O": "without",
    "W/": "with",
    "WWO": "with and without",
    "W/WO": "with and without",
    "C+": "with contrast",
    "C-": "without contrast",
    "CONT": "contrast",
    "AX": "axial",
    "SAG": "sagittal",
    "COR": "coronal",
    "LT": "left",
    "RT": "right",
    "BILAT": "both sides",
    "BIL": "both sides",
    "ABD": "abdomen",
    "ANGIO": "angiogram",
    "LOC": "localizer",
    "VIEWS": "views",
}

# At the end of a description, "with" or "without" alone means contrast given or not.
_CONTRAST_AT_END = {"W": "with contrast", "WO": "without contrast", "W/O": "without contrast",
                    "WWO": "with and without contrast", "W/WO": "with and without contrast"}

# Words kept in capitals: modality codes and abbreviations that are read as letters (a patient
# knows "MRI", and "PA" is what the hospital's letter says too).
_KEEP = {"CT", "MR", "MRI", "US", "DX", "CR", "PET", "PT", "NM", "MG", "XA", "RF", "XR", "SR", "PA", "AP", "LL",
         "PDF", "SPECT", "FSE", "TSE", "FLAIR", "DWI", "ADC", "SWI", "MRA", "CTA", "HRCT", "PE", "ECG", "DEXA", "IV", "II", "III"}

_WORD_RE = re.compile(r"\S+")
_UNIT_RE = re.compile(r"^(\d+(?:\.\d+)?)(MM|CM)$")


@functools.cache
def _meanings() -> dict[str, str]:
    """Modality code -> meaning, from pydicom's CID 33 (Modality) then CID 29 (Acquisition
    Modality); built once per process."""
    from pydicom.sr.codedict import codes

    found: dict[str, str] = {}
    for collection in (codes.cid33, codes.cid29):
        for name in collection.dir():
            code = getattr(collection, name)
            found.setdefault(str(code.value).upper(), str(code.meaning))
    return found


def modality_meaning(code: str) -> str:
    """DICOM's meaning of a modality code ("" for an unknown one)."""
    return _meanings().get((code or "").strip().upper(), "")


def modality_plain(code: str) -> str:
    """One plain sentence about a modality code: the product copy when there is one, else
    DICOM's formal meaning, else "" (an unknown code)."""
    key = (code or "").strip().upper()
    plain = _PLAIN.get(key)
    return str(plain) if plain else modality_meaning(key)


def modality_codes(text: str) -> list[str]:
    """The codes in a study's ``modalities`` ("CT,PT" or "CT\\PT"), in order, without repeats."""
    return list(dict.fromkeys(c.strip().upper() for c in re.split(r"[,\\/ ]+", text or "") if c.strip()))


def _plain_word(word: str) -> str:
    upper = word.upper()
    if upper in _SHORTHAND:
        return _SHORTHAND[upper]
    unit = _UNIT_RE.match(upper)
    if unit:
        return f"{unit.group(1)} {unit.group(2).lower()}"
    core = upper.strip("()[],.:;")
    if core in _KEEP:
        return word
    if any(ch.isdigit() for ch in word):
        return word  # T1, T2, 3D: read as written
    return word.lower()


def plain_description(text: str) -> str:
    """A description written in capitals made readable: "CT CHEST W CONTRAST" -> "CT chest with
    contrast"; "AXIAL 5MM C+" -> "Axial 5 mm with contrast". Text that already has lower-case
    letters was written by a person and is returned as it is."""
    text = (text or "").strip()
    if not text or any(ch.islower() for ch in text):
        return text
    raw = _WORD_RE.findall(text)
    words = [_plain_word(word) for word in raw]
    if raw and raw[-1].upper() in _CONTRAST_AT_END:
        words[-1] = _CONTRAST_AT_END[raw[-1].upper()]  # "CT HEAD WO": without contrast
    result = " ".join(words)
    return result[:1].upper() + result[1:]

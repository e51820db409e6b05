"""Which series are head volumes from which a face can be reconstructed.

A CT or MR series that covers the head with enough slices can be rendered in 3-D, and the
surface of that rendering is the patient's face; de-identifying the header does not change
that, and Lightbox does not deface images. "What this scan reveals" and the README of a
de-identified copy say so for the series this rule picks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db.models import Count

from imaging.models import Series

# Fewer slices than this do not make a volume a face can be rebuilt from (a scout, a few
# localiser images); a typical head CT has 30 to 300.
MIN_SLICES = 20
VOLUME_MODALITIES = {"CT", "MR", "PT"}
_HEAD = re.compile(r"\b(head|brain|skull|face|facial|orbit|orbits|sinus|sinuses|cranial|cranium|neuro|iac|petrous|"
                   r"mandible|maxilla|dental|cbct|tmj|cerebr\w*|kopf|schaedel|schädel|cerveau|crane|crâne)\b",
                   re.IGNORECASE)


def is_head(*texts: str) -> bool:
    """True when a body part or description names the head (``BodyPartExamined`` is a
    defined term such as HEAD, BRAIN or SKULL; descriptions are free text)."""
    return any(_HEAD.search(t.replace("_", " ")) for t in texts if t)


def is_head_volume(modality: str, images: int, body_part: str, description: str, study_description: str) -> bool:
    """The rule for one series: CT, MR or PET of the head with at least MIN_SLICES images."""
    return modality in VOLUME_MODALITIES and images >= MIN_SLICES and is_head(body_part, description, study_description)


def face_series(series: Iterable[Series]) -> list[Series]:
    """The series, among ``series`` (already narrowed to one patient by the caller), that are
    head volumes (:func:`is_head_volume`), with ``n`` (their instance count) annotated."""
    ids = [s.pk for s in series]
    rows = (
        Series.objects.filter(pk__in=ids, modality__in=VOLUME_MODALITIES)
        .annotate(n=Count("instances"))
        .filter(n__gte=MIN_SLICES)
        .select_related("study")
    )
    return [s for s in rows if is_head_volume(s.modality, s.n, s.body_part, s.description, s.study.description)]

"""Test-only helpers for imaging: what production code never needs (grep before moving one back)."""

from __future__ import annotations

from typing import Any

from core.actor import Actor
from imaging.models import Series
from imaging.services.ingest import IMPORTER_NAME
from imaging.services.rendering import slices_in_order, viewer_metadata


def importer() -> Actor:
    """The actor ``manage.py import_dicom`` and the PACS sync import as."""
    return Actor.system(IMPORTER_NAME)


def series_slices(series: Series) -> list[dict[str, Any]]:
    """``viewer_metadata`` for every image of ``series``, in the viewer's display order."""
    return [viewer_metadata(s.instance) for s in slices_in_order(series.instances.all())]


def can_decode(path: str) -> bool:
    """Whether the first frame of the file at ``path`` can be shown (``render.decode_problem``)."""
    from imaging.dicom import render

    return render.decode_problem(path) is None

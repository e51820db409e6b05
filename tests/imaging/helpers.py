"""Test-only helpers for imaging: what production code never needs (grep before moving one back)."""

from __future__ import annotations

from typing import Any

from core.actor import Actor
from imaging import storage
from imaging.models import Instance, PixelStatus, PixelText, Series, Study
from imaging.pixel_text import pixel_text_for_instances
from imaging.services.ingest import IMPORTER_NAME, PIXEL_ERROR_CHARS
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


def pixel_text_for(*, instance: Instance, refresh: bool = False) -> PixelText:
    """The OCR result for one instance (``pixel_text_for_instances`` of one)."""
    return pixel_text_for_instances(instances=[instance], refresh=refresh)[instance.pk]


def instances_check_pixels(*, study: Study | None = None) -> int:
    """Set ``pixel_status``/``pixel_error`` as the import now does, on rows that say "ok" without
    having been checked (migration 0005 gave every older row "ok"): "none" where there are no
    pixels, "undecodable" with the reason where the stored file's first frame cannot be shown.
    Returns how many rows were marked undecodable; idempotent. Here because nothing in
    production calls it; a deployment that still has rows from before 0005 needs it back in
    ``imaging.services.integrity`` with a command or a data migration that runs it."""
    from imaging.dicom import render

    qs = Instance.objects.all() if study is None else Instance.objects.filter(series__study=study)
    qs.filter(rows__isnull=True).exclude(pixel_status=PixelStatus.NONE).update(pixel_status=PixelStatus.NONE, pixel_error="")
    marked = 0
    rows = qs.filter(rows__isnull=False, pixel_status=PixelStatus.OK).values_list("pk", "storage_path")
    for pk, path in rows.iterator(chunk_size=500):
        try:
            with storage.open_stored(path) as fh:
                problem = render.stream_decode_problem(fh)
        except FileNotFoundError:
            continue  # the integrity check reports missing files; this is about decoding
        if problem is not None:
            Instance.objects.filter(pk=pk).update(pixel_status=PixelStatus.UNDECODABLE, pixel_error=problem[:PIXEL_ERROR_CHARS])
            marked += 1
    return marked

"""Text burned into an instance's pixels: OCR results cached per instance in ``PixelText``.

The only writer of :class:`imaging.models.PixelText`. OCR itself is
:mod:`imaging.dicom.ocr` (Tesseract); this module opens the stored files
(:func:`imaging.storage.open_stored`), runs it, and keeps one row per instance so a second export
or page view of the same study reads nothing again (stored files are content-addressed and never
change, so a result stays true).

Who may call: code that has already narrowed to one patient's study or instance, i.e. exports'
packaging (de-identified copies mask :func:`regions_for_masking`), "What this scan reveals"
selectors, and the ``imaging.pixel_text_check_study`` task (ids in). Nothing here records an
access event: the callers' services record the access they make. Nothing here logs what was read
(the text is the patient's data, like the file it came from).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from imaging.models import Instance, PixelText
from imaging.storage import open_stored

if TYPE_CHECKING:
    from imaging.models import Study

# Instances are read (and their rows written) this many at a time: frames of several
# instances share one Tesseract call (imaging.dicom.ocr strips of 4), and a worker lost half way
# through a 300-slice study keeps what it had finished.
BATCH = 32


def _tesseract_cmd() -> str | None:
    # Settable so a deployment can point at its own build (and tests at a missing one).
    return getattr(settings, "OCR_TESSERACT_CMD", None) or None


def _stale(row: PixelText) -> bool:
    """A cached "OCR is not installed" says nothing once it is: read again."""
    from imaging.dicom import ocr

    return (row.status == PixelText.Status.NOT_CHECKED and row.reason == ocr.NOT_INSTALLED
            and ocr.available(_tesseract_cmd())[0])


def pixel_text_for_instances(*, instances: Iterable[Instance], refresh: bool = False) -> dict[int, PixelText]:
    """The OCR result of each of ``instances`` (one patient's), by instance id: read once and
    cached (``refresh=True`` reads again).

    Uncached instances are read in batches of :data:`BATCH`, so the frames of a CT series share
    Tesseract calls (60-160 ms a CT slice instead of 170-260 ms read one by one). Called by
    exports' packaging for the images of a de-identified copy, a batch ahead of the one it
    writes, and by :func:`pixel_text_for_study`; the caller has already narrowed to the
    patient's own instances. Records no access event.
    """
    from imaging.dicom import ocr

    instances = list(instances)
    rows = {row.instance_id: row for row in PixelText.objects.filter(instance__in=instances)}
    todo = [inst for inst in instances if refresh or inst.pk not in rows or _stale(rows[inst.pk])]
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        results = ocr.read_instances([_opener(inst.storage_path) for inst in chunk],
                                     tesseract_cmd=_tesseract_cmd())
        for inst, result in zip(chunk, results, strict=True):
            rows[inst.pk] = _save(inst, result)
    return {inst.pk: rows[inst.pk] for inst in instances}


def _opener(name: str) -> Any:
    # Opened only when OCR reaches the file, and closed before the next one is opened.
    return lambda: open_stored(name)


@transaction.atomic
def _save(instance: Instance, result: Any) -> PixelText:
    row, _ = PixelText.objects.update_or_create(
        instance=instance,
        defaults={
            "status": result.status,
            "engine": result.engine[:64],
            "frames_checked": result.frames_checked,
            "regions": result.regions,
            "kinds": result.kinds,
            "reason": result.reason[:200],
        },
    )
    return row


def pixel_text_for_study(*, study: Study, refresh: bool = False) -> dict[str, int]:
    """Read every image instance of ``study`` (cached ones are not read again); counts by status.

    Called by the ``imaging.pixel_text_check_study`` task and by exports before they package a
    study (so its :func:`pixel_text_for_instances` calls hit the cache). The caller has already
    narrowed to the patient's own study. Records no access event.
    """
    instances = Instance.objects.filter(series__study=study, rows__gt=0, columns__gt=0).order_by(
        "series__number", "series__pk", "number", "pk")
    counts = {status: 0 for status in PixelText.Status.values}
    for row in pixel_text_for_instances(instances=instances, refresh=refresh).values():
        counts[row.status] += 1
    return counts


def regions_for_masking(pixel_text: PixelText) -> list[dict[str, Any]]:
    """The boxes to mask in a de-identified copy: ``[{"frame": 0, "box": [x, y, w, h]}, ...]``.

    Frame and box only, in the frame's own pixel coordinates (the text read stays out of the
    copy's code path). Called by exports' packaging with a row from :func:`pixel_text_for_instances`.
    """
    return [{"frame": int(region["frame"]), "box": [int(v) for v in region["box"]]}
            for region in pixel_text.regions or []]

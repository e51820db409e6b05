"""Rendering stored images for the viewer: frames, thumbnails, viewer metadata, slice order.

- ``render_frame`` / ``render_thumbnail`` / ``viewer_metadata``: callers are the imaging views
  and ``imaging.services.viewing``, with an instance or series already narrowed by
  ``imaging.selectors`` (``for_actor``). Rendering is not audited per frame (DESIGN.md flow 2):
  the study page, the viewer and a download are, in ``viewing``.
- ``window_check``: the one rule for window values, used by the views (to answer 400) and by
  ``render_frame`` (for every other caller).
- ``thumbnails_render`` / ``thumbnails_render_later``: thumbnails made ahead of time, after an
  import commits (a Celery task), so no page waits for a first render.
- ``slices_in_order``: the one display order of a series' images, used by the viewer and by the
  series thumbnail (its middle slice).

Renders are cached in the ``renders`` storage by (file hash, frame, window, format); stored
files are content-addressed and never change, so a cached render stays true.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile

from imaging import storage
from imaging.errors import FORMATS, RenderError
from imaging.models import Instance, PixelStatus, Series, Study
from imaging.selectors import viewer_instances

logger = logging.getLogger(__name__)

# imaging.dicom (pydicom, numpy, Pillow: about 49 MB) is imported by the functions that decode,
# not here: a cached render is served without loading any of them.

THUMBNAIL_SIZE = 160
# Real windows stay far inside a million: stored values have at most 16 bits (65,536 levels) and
# CT spans −1024…3071 HU. A bigger value is never a picture, only one more file in the render cache.
WINDOW_LIMIT = 1_000_000


def window_check(center: float | None, width: float | None) -> None:
    """Raise ``RenderError`` (with a reason fit for a 400 answer) unless the window is usable:
    both values or neither, finite, ``|center|`` and ``width`` at most ``WINDOW_LIMIT``, and
    ``width`` at least 1."""
    if (center is None) != (width is None):
        raise RenderError("Give both window center and width, or neither.")
    if center is None or width is None:
        return
    if not (math.isfinite(center) and math.isfinite(width)) or abs(center) > WINDOW_LIMIT or not 1 <= width <= WINDOW_LIMIT:
        raise RenderError(
            f"Window values are out of range: the center must be within ±{WINDOW_LIMIT:,} "
            f"and the width between 1 and {WINDOW_LIMIT:,}."
        )


def _render_name(sha256: str, stem: str, fmt: str) -> str:
    return f"renders/{sha256[:2]}/{sha256[2:4]}/{sha256}/{stem}.{fmt}"


def _cached_or_render(name: str, instance: Instance, **kwargs: Any) -> bytes:
    if instance.pixel_status == PixelStatus.UNDECODABLE:
        # Found at ingest: say why without decoding the same broken data again.
        raise RenderError(instance.pixel_error or "This image cannot be shown.")
    cache = storage.render_storage()
    try:
        with cache.open(name, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        pass
    if not instance.is_image:
        raise RenderError("This object has no image to show.")
    try:
        fh = storage.open_stored(instance.storage_path)
    except FileNotFoundError as exc:
        raise RenderError("The stored file is missing.") from exc
    from imaging.dicom import render

    with fh:
        data = render.render(fh, **kwargs)
    cache.save(name, ContentFile(data))
    return data


def render_frame(
    instance: Instance, *, frame: int = 0, center: float | None = None, width: float | None = None, fmt: str = "png"
) -> bytes:
    """An 8-bit PNG/WebP of one frame at a window (the file's default when none is given).

    Cached in the renders storage by (file hash, frame, window, format): each is decoded once.
    The caller has narrowed ``instance`` to the actor (``selectors.instance_get``); a download
    is audited by ``viewing.instance_download``, a frame of the viewer is not. Raises
    ``RenderError`` (with ``reason``) for bad arguments or undecodable data.
    """
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    window_check(center, width)
    if not isinstance(frame, int) or not 0 <= frame < max(instance.frames, 1):
        raise RenderError(f"Frame {frame} does not exist (the image has {instance.frames}).")
    window = "auto" if center is None else f"c{center:g}_w{width:g}"
    name = _render_name(instance.sha256, f"f{frame}_{window}", fmt)
    return _cached_or_render(name, instance, frame=frame, center=center, width=width, fmt=fmt)


def _middle_image(series: Series) -> Instance | None:
    """The middle of the images that can be shown, in display order; else an undecodable one
    (whose render says why)."""
    images = [s.instance for s in slices_in_order(viewer_instances(series))]
    shown = [i for i in images if i.pixel_status != PixelStatus.UNDECODABLE] or images
    return shown[len(shown) // 2] if shown else None


def render_thumbnail(series_or_instance: Series | Instance, *, size: int = THUMBNAIL_SIZE, fmt: str = "png") -> bytes:
    """A small image (``size`` px square at most) of the middle slice of a series, or of the
    middle frame of an instance, at the file's default window. Cached like ``render_frame``;
    same callers, not audited."""
    if fmt not in FORMATS:
        raise RenderError(f"Unsupported image format {fmt!r}.")
    if not 16 <= size <= 1024:
        raise RenderError("Thumbnail size must be between 16 and 1024 pixels.")
    instance, frame, name = _thumbnail_of(series_or_instance, size, fmt)
    return _cached_or_render(name, instance, frame=frame, fmt=fmt, max_size=size)


def _thumbnail_of(series_or_instance: Series | Instance, size: int, fmt: str) -> tuple[Instance, int, str]:
    """The instance, frame and render-cache name of a thumbnail."""
    if isinstance(series_or_instance, Series):
        instance = _middle_image(series_or_instance)
        if instance is None:
            raise RenderError("This series has no images.")
    else:
        instance = series_or_instance
    frame = max(instance.frames, 1) // 2 if instance.frames > 1 else 0
    return instance, frame, _render_name(instance.sha256, f"thumbsq_f{frame}_{size}", fmt)


def thumbnail_ready(series: Series, *, size: int = THUMBNAIL_SIZE, fmt: str = "png") -> bool:
    """Whether the series' thumbnail is already in the render cache (made ahead of time by
    :func:`thumbnails_render`), so serving it decodes nothing."""
    try:
        _, _, name = _thumbnail_of(series, size, fmt)
    except RenderError:
        return False
    return storage.render_storage().exists(name)


def thumbnails_render(study_id: int) -> dict[str, int]:
    """Render the thumbnail of every series of a study that has images, ahead of the first page
    that shows them (a first render takes 0.2-0.35 s per series on a two-core machine; the
    pages showed black squares meanwhile). Idempotent: a cached thumbnail is not rendered again.

    Who may call: the ``imaging.thumbnails_render_study`` task (queued on commit of an import);
    nothing is shown to anyone, so nothing is audited. Returns counts only (no patient data)."""
    counts = {"rendered": 0, "failed": 0}
    for series in Series.objects.filter(study_id=study_id).order_by("number", "pk"):
        if not viewer_instances(series).exists():
            continue
        try:
            render_thumbnail(series)
        except RenderError:
            counts["failed"] += 1  # the page says why (the image's reason), as before
        else:
            counts["rendered"] += 1
    return counts


def thumbnails_render_later(study_uid: str) -> None:
    """Queue :func:`thumbnails_render` for a study whose rows just committed (called by
    ``imaging.services.ingest`` through ``transaction.on_commit``). Sent by name (the tasks
    module imports ingest). A broker outage costs only speed: pages render thumbnails on demand."""
    from celery import current_app

    study_id = Study.objects.filter(study_uid=study_uid).values_list("pk", flat=True).first()
    if study_id is None:
        return
    try:
        current_app.send_task("imaging.thumbnails_render_study", args=[study_id])
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is down
        logger.warning("could not queue the thumbnails of study %s", study_id)


def viewer_metadata(instance: Instance) -> dict[str, Any]:
    """What the viewer needs for one instance: frames, size, default window, rescale (for HU
    readouts), pixel spacing and slice position. From the row; from the file for rows imported
    before the metadata was stored."""
    meta = instance.meta or {}
    if not meta and instance.is_image:
        from imaging.dicom import render

        try:
            with storage.open_stored(instance.storage_path) as fh:
                meta = render.header_viewer_info(fh)
        except (FileNotFoundError, RenderError):
            meta = {}
    center, width = meta.get("window_center"), meta.get("window_width")
    return {
        "sop_uid": instance.sop_uid,
        "number": instance.number,
        "is_image": instance.is_image,
        "sop_class": instance.sop_class,
        "sop_class_name": meta.get("sop_class_name", ""),
        "transfer_syntax": instance.transfer_syntax,
        "frames": instance.frames,
        "rows": instance.rows,
        "columns": instance.columns,
        "photometric": meta.get("photometric", ""),
        "is_color": meta.get("samples_per_pixel", 1) > 1 or meta.get("photometric") == "PALETTE COLOR",
        "default_window": {"center": center, "width": width} if center is not None else None,
        "rescale": {
            "slope": meta.get("rescale_slope", 1.0),
            "intercept": meta.get("rescale_intercept", 0.0),
            "type": meta.get("rescale_type", ""),
        },
        "pixel_spacing": meta.get("pixel_spacing"),
        "slice_thickness": meta.get("slice_thickness"),
        "slice_location": meta.get("slice_location"),
        "image_position": meta.get("image_position"),
        "image_orientation": meta.get("image_orientation"),
        "frame_time_ms": meta.get("frame_time_ms"),
        "lossy": bool(meta.get("lossy")),
        # Set at ingest: why the pixels cannot be shown ("" when they can, or there are none).
        "cannot_show": (instance.pixel_error or "This image cannot be shown.")
        if instance.pixel_status == PixelStatus.UNDECODABLE else "",
    }


# --- Slice order ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    instance: Instance
    meta: dict[str, Any]  # viewer_metadata(instance)
    position: float | None  # mm along the slice normal; None without image-plane geometry


def slice_position(meta: Mapping[str, Any]) -> float | None:
    """Position along the slice normal in mm, from Image Position and Image Orientation (Patient)
    (None when either is missing or malformed)."""
    ipp, iop = meta.get("image_position"), meta.get("image_orientation")
    if not ipp or not iop or len(ipp) != 3 or len(iop) != 6:
        return None
    r, c = iop[:3], iop[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return sum(p * n for p, n in zip(ipp, normal, strict=True))


def slices_in_order(instances: Iterable[Instance]) -> list[Slice]:
    """``instances`` in display order, each with its ``viewer_metadata``: anatomical order
    (position along the slice normal, then arrival) when every one has geometry, else by
    Instance Number (unnumbered last), then arrival. Scanners number slices head-first or
    feet-first; geometry is the truth the viewer's slice readout needs.

    The one slice order: the viewer (``viewing.series_open``) and the series thumbnail (its
    middle slice) both call it, so the thumbnail is the image the viewer shows half-way."""
    slices = []
    for instance in instances:
        meta = viewer_metadata(instance)
        slices.append(Slice(instance, meta, slice_position(meta)))
    if slices and all(s.position is not None for s in slices):
        return sorted(slices, key=lambda s: (s.position, s.instance.pk))
    return sorted(slices, key=lambda s: (s.instance.number is None, s.instance.number or 0, s.instance.pk))

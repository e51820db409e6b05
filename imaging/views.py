"""The patient's imaging pages: study list, study page, viewer, image endpoints, verify a copy.

Every view narrows through ``imaging.selectors`` (another patient's object is a 404). The study
page, the viewer and an image download each record one access event in the same transaction as
the read (docs/security.md §13); the frames and thumbnails the pages load record none, or a scroll
through a CT would write hundreds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from audit.services import record_portal_access
from core.reauth import require_recent_reauthentication
from imaging import selectors, services
from imaging.forms import LimitedUploadHandler, VerifyCopyForm
from imaging.models import Instance, PixelStatus, Series, Study
from imaging.pacs import fetch_progress

# Window values outside these bounds are not real images (16-bit data spans 65,536 values;
# CT Hounsfield units −1024…3071): refusing them keeps the render cache from filling with junk.
WINDOW_LIMIT = 1_000_000


def _window(request: HttpRequest) -> tuple[float | None, float | None]:
    """``c`` and ``w`` from the query string; both or neither. Raises ValueError when invalid."""
    c_raw, w_raw = request.GET.get("c", ""), request.GET.get("w", "")
    if not c_raw and not w_raw:
        return None, None
    center, width = float(c_raw), float(w_raw)
    if not (math.isfinite(center) and math.isfinite(width)) or abs(center) > WINDOW_LIMIT or not 1 <= width <= WINDOW_LIMIT:
        raise ValueError("window out of range")
    return round(center), round(width)


def _image_response(data: bytes, *, content_type: str = "image/png") -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Length"] = str(len(data))
    return response


# Standard CT windows in Hounsfield units (centre, width), as radiology workstations ship them.
CT_PRESETS = [
    ("soft", _("Soft tissue"), 40, 400),
    ("lung", _("Lung"), -600, 1500),
    ("bone", _("Bone"), 400, 1800),
    ("brain", _("Brain"), 40, 80),
]


def _along_normal(meta: dict) -> float | None:
    """Position along the slice normal in mm, from the image plane (None without geometry)."""
    ipp, iop = meta.get("image_position"), meta.get("image_orientation")
    if not ipp or not iop or len(ipp) != 3 or len(iop) != 6:
        return None
    r, c = iop[:3], iop[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return sum(p * n for p, n in zip(ipp, normal, strict=True))


def _full_range(instance: Instance) -> dict:
    """A window spanning every stored value: where dragging starts when the file names none."""
    meta = instance.meta or {}
    bits = int(meta.get("bits_stored") or 8)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if meta.get("pixel_representation") else (0, 2**bits - 1)
    slope, intercept = float(meta.get("rescale_slope") or 1.0), float(meta.get("rescale_intercept") or 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return {"center": (a + b) / 2, "width": max(1.0, abs(b - a))}


def _viewer_config(series: Series, instances: list[Instance]) -> dict:
    """Everything viewer.js needs, handed over with ``json_script`` (no inline script).

    Slices run in anatomical order when every image has geometry (as scanners number slices
    head-first or feet-first), else by instance number; each frame of a multi-frame image is
    one step."""
    study = series.study
    metas = [(instance, services.viewer_metadata(instance) or {}) for instance in instances]
    positions = [_along_normal(meta) for _, meta in metas]
    if all(p is not None for p in positions):
        order = sorted(range(len(metas)), key=lambda i: (positions[i], metas[i][0].pk))
    else:
        order = list(range(len(metas)))
    slices = []
    for i in order:
        instance, meta = metas[i]
        location = meta.get("slice_location")
        position = location if location is not None else positions[i]
        kwargs = {"study_id": study.pk, "series_id": series.pk, "instance_id": instance.pk}
        download = reverse("imaging-download", kwargs=kwargs)
        for index in range(max(1, instance.frames)):
            slices.append(
                {
                    "src": reverse("imaging-frame", kwargs={**kwargs, "frame": index}),
                    "download": f"{download}?frame={index}",
                    "position": round(float(position), 2) if position is not None and instance.frames == 1 else None,
                    "frame": index + 1 if instance.frames > 1 else None,
                    "frames": instance.frames,
                    # Why this image cannot be shown (found at ingest); "" when it can.
                    "error": meta.get("cannot_show") or "",
                }
            )
    first_instance, first = metas[order[0]]
    colour = bool(first.get("is_color"))
    is_ct = (series.modality or "").upper() == "CT" or (first.get("rescale") or {}).get("type") == "HU"
    return {
        "slices": slices,
        "window": first.get("default_window"),
        "fallbackWindow": _full_range(first_instance),
        "presets": [] if colour or not is_ct else [{"key": k, "name": str(n), "center": c, "width": w} for k, n, c, w in CT_PRESETS],
        "adjustable": not colour,
        "frameTimeMs": first.get("frame_time_ms") or None,
        "unshown": sum(1 for _, meta in metas if meta.get("cannot_show")),
        "unshownReasons": list(dict.fromkeys(meta["cannot_show"] for _, meta in metas if meta.get("cannot_show"))),
    }


@dataclass
class Unshown:
    """Images of one series that cannot be shown, and why (found at ingest)."""

    count: int = 0
    total: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def all(self) -> bool:
        return self.count == self.total


def _unshown_by_series(study: Study) -> dict[int, Unshown]:
    """For the study page: per series, the images whose pixels cannot be decoded and why.

    ``study`` came from ``selectors.study_for_user``; this reads only its own instances.
    (It belongs in ``selectors.series_cards``, which another change owns; see the report.)"""
    found: dict[int, Unshown] = {}
    rows = Instance.objects.filter(series__study=study, rows__isnull=False).values_list("series_id", "pixel_status", "pixel_error")
    for series_id, status, error in rows:
        entry = found.setdefault(series_id, Unshown())
        entry.total += 1
        if status == PixelStatus.UNDECODABLE:
            entry.count += 1
            reason = error or _("This image cannot be shown.")
            if reason not in entry.reasons:
                entry.reasons.append(reason)
    return {series_id: entry for series_id, entry in found.items() if entry.count}


def _cannot_render(exc: Exception) -> HttpResponse:
    """A stored image the renderer cannot decode: say so plainly (the viewer shows a message)."""
    return HttpResponse(getattr(exc, "reason", "This image cannot be displayed."), status=422, content_type="text/plain")


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_for_user(request.user)
    studies = list(selectors.studies_for_user(request.user)) if patient else []
    # "Fetching your images" while a newly activated patient's history comes from the PACS.
    fetching = fetch_progress(patient)
    return render(request, "imaging/home.html", {"patient": patient, "studies": studies, "fetching": fetching})


@require_GET
@never_cache
@transaction.atomic
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = selectors.study_for_user(request.user, study_id)
    report, groups = selectors.header_report_for_study(study)
    record_portal_access(request, patient=study.patient, study=study, action="view", details={"page": "study", "header_report": True})
    cards = selectors.series_cards(study)
    unshown = _unshown_by_series(study)
    for card in cards:
        card.unshown = unshown.get(card.series.pk)
    return render(
        request,
        "imaging/study.html",
        {
            "study": study,
            "cards": cards,
            "integrity": selectors.integrity_for_study(study),
            "report": report,
            "reveal_groups": groups,
        },
    )


@require_GET
@never_cache
@transaction.atomic
def viewer(request: HttpRequest, study_id: int, series_id: int) -> HttpResponse:
    series = selectors.series_for_user(request.user, study_id, series_id)
    instances = list(selectors.viewer_instances(series))
    if not instances:
        raise Http404("This series has no images to show.")
    config = _viewer_config(series, instances)
    record_portal_access(
        request, patient=series.study.patient, study=series.study, action="view", details={"page": "viewer", "series": series.pk}
    )
    return render(request, "imaging/viewer.html", {"study": series.study, "series": series, "config": config})


@require_GET
@never_cache
def frame(request: HttpRequest, study_id: int, series_id: int, instance_id: int, frame: int) -> HttpResponse:
    instance = selectors.instance_for_user(request.user, study_id, series_id, instance_id)
    if instance.rows is None or frame >= instance.frames:
        raise Http404("No such frame.")
    try:
        center, width = _window(request)
    except ValueError:
        return HttpResponseBadRequest("Invalid window.")
    try:
        data = services.render_frame(instance, frame=frame, center=center, width=width, fmt="png")
    except services.RenderError as exc:
        return _cannot_render(exc)
    return _image_response(data)


@require_GET
@never_cache
def series_thumbnail(request: HttpRequest, study_id: int, series_id: int) -> HttpResponse:
    series = selectors.series_for_user(request.user, study_id, series_id)
    if not selectors.viewer_instances(series).exists():
        raise Http404("This series has no images.")
    try:
        data = services.render_thumbnail(series)
    except services.RenderError as exc:
        return _cannot_render(exc)
    return _image_response(data)


@require_GET
@never_cache
@transaction.atomic
def download_image(request: HttpRequest, study_id: int, series_id: int, instance_id: int) -> HttpResponse:
    require_recent_reauthentication(request)  # docs/security.md §6: downloads need a fresh password
    instance = selectors.instance_for_user(request.user, study_id, series_id, instance_id)
    try:
        index = int(request.GET.get("frame", "0"))
        center, width = _window(request)
    except ValueError:
        return HttpResponseBadRequest("Invalid frame or window.")
    if instance.rows is None or not 0 <= index < instance.frames:
        raise Http404("No such frame.")
    try:
        data = services.render_frame(instance, frame=index, center=center, width=width, fmt="png")
    except services.RenderError as exc:
        return _cannot_render(exc)
    study = instance.series.study
    record_portal_access(
        request,
        patient=study.patient,
        study=study,
        action="download",
        details={"format": "png", "series": instance.series_id, "instance": instance.pk, "frame": index},
    )
    response = _image_response(data)
    # The name is ours, never a header value (docs/security.md §16).
    date = study.study_date.isoformat() if study.study_date else "undated"
    number = instance.number if instance.number is not None else instance.pk
    response["Content-Disposition"] = f'attachment; filename="scan-{date}-series-{instance.series.number or 0}-image-{number}-{index + 1}.png"'
    return response


@require_http_methods(["GET", "POST"])
@never_cache
@csrf_exempt  # only so the size-limiting upload handler can be installed first: _verify_copy checks CSRF
def verify_copy(request: HttpRequest) -> HttpResponse:
    request.upload_handlers.insert(0, LimitedUploadHandler(request))
    return _verify_copy(request)


@csrf_protect
def _verify_copy(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_for_user(request.user)
    results = None
    form = VerifyCopyForm(request=request)
    if request.method == "POST" and patient is not None:
        form = VerifyCopyForm(request.POST, request.FILES, request=request)
        if form.is_valid():
            files = form.cleaned_data["files"]
            with transaction.atomic():
                results = selectors.verify_copies_for_user(request.user, ((f.name, f.file) for f in files))
                counts: dict[str, int] = {"files": len(results)}
                for result in results:
                    counts[result.outcome] = counts.get(result.outcome, 0) + 1
                record_portal_access(request, patient=patient, action="query", details={"page": "verify_copy", **counts})
            for f in files:
                f.close()  # a temporary upload file is deleted when closed; nothing is kept
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "imaging/verify.html", {"patient": patient, "form": form, "results": results}, status=status)

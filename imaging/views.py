"""The patient's imaging pages: study list, study page, viewer, image endpoints, verify a copy.

Views present; they do not write. Every page narrows through ``imaging.selectors`` (another
patient's object is a 404). The study page, the viewer, an image download and Verify a copy are
audited reads: services in ``imaging.services.viewing`` that select and record one access event in
one transaction (docs/security.md §13). The frames and thumbnails the pages load are read through
the selectors and record nothing, or a scroll through a CT would write hundreds.
"""

from __future__ import annotations

from csp.constants import NONE, SELF
from csp.decorators import csp_replace
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from core.actor import Kind
from core.reauth import require_recent_reauthentication
from imaging import selectors
from imaging.errors import RenderError
from imaging.forms import LimitedUploadHandler, VerifyCopyForm
from imaging.models import Instance
from imaging.services import rendering, viewing


def _window(request: HttpRequest) -> tuple[float | None, float | None]:
    """``c`` and ``w`` from the query string; both or neither, within ``rendering.window_check``.
    Raises ValueError (not numbers) or RenderError (out of range, with its reason)."""
    c_raw, w_raw = request.GET.get("c", ""), request.GET.get("w", "")
    if not c_raw and not w_raw:
        return None, None
    center, width = float(c_raw), float(w_raw)
    rendering.window_check(center, width)
    # Whole numbers: a dragged window differs in the decimals, and each value is a cached render.
    return round(center), round(width)


def _bad_window(exc: Exception) -> HttpResponse:
    reason = exc.reason if isinstance(exc, RenderError) else "Give the window center and width as numbers."
    return HttpResponseBadRequest(f"Invalid window. {reason}", content_type="text/plain")


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


def _full_range(instance: Instance) -> dict:
    """A window spanning every stored value: where dragging starts when the file names none."""
    meta = instance.meta or {}
    bits = int(meta.get("bits_stored") or 8)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if meta.get("pixel_representation") else (0, 2**bits - 1)
    slope, intercept = float(meta.get("rescale_slope") or 1.0), float(meta.get("rescale_intercept") or 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return {"center": (a + b) / 2, "width": max(1.0, abs(b - a))}


def _viewer_config(opened: viewing.OpenedSeries) -> dict:
    """Everything viewer.js needs, handed over with ``json_script`` (no inline script): the
    slices in the order ``series_open`` gives them, each frame of a multi-frame image one step."""
    series, study = opened.series, opened.series.study
    slices = []
    count = selectors.image_count_for(item.instance for item in opened.slices)
    for number, item in enumerate(opened.slices, start=1):
        instance, meta = item.instance, item.meta
        location = meta.get("slice_location")
        position = location if location is not None else item.position
        kwargs = {"study_id": study.pk, "series_id": series.pk, "instance_id": instance.pk}
        download = reverse("imaging-download", kwargs=kwargs)
        for index in range(max(1, instance.frames)):
            slices.append(
                {
                    "src": reverse("imaging-frame", kwargs={**kwargs, "frame": index}),
                    "download": f"{download}?frame={index}",
                    "position": round(float(position), 2) if position is not None and instance.frames == 1 else None,
                    # The one counting rule (selectors.ImageCount): "Image 1 of 2, frame 3 of 30".
                    "image": number,
                    "images": count.images,
                    "frame": index + 1 if instance.frames > 1 else None,
                    "frames": instance.frames,
                    # Why this image cannot be shown (found at ingest); "" when it can.
                    "error": meta.get("cannot_show") or "",
                }
            )
    first_slice = opened.slices[0]
    first = first_slice.meta
    colour = bool(first.get("is_color"))
    is_ct = (series.modality or "").upper() == "CT" or (first.get("rescale") or {}).get("type") == "HU"
    metas = [item.meta for item in opened.slices]
    return {
        "slices": slices,
        "count": {"images": count.images, "frames": count.frames},
        "window": first.get("default_window"),
        "fallbackWindow": _full_range(first_slice.instance),
        "presets": [] if colour or not is_ct else [{"key": k, "name": str(n), "center": c, "width": w} for k, n, c, w in CT_PRESETS],
        "adjustable": not colour,
        "frameTimeMs": first.get("frame_time_ms") or None,
        "unshown": sum(1 for meta in metas if meta.get("cannot_show")),
        "unshownReasons": list(dict.fromkeys(meta["cannot_show"] for meta in metas if meta.get("cannot_show"))),
    }


def _cannot_render(exc: Exception) -> HttpResponse:
    """A stored image the renderer cannot decode: say so plainly (the viewer shows a message)."""
    return HttpResponse(getattr(exc, "reason", "This image cannot be displayed."), status=422, content_type="text/plain")


# Signed-in people without a patient record of their own, who start elsewhere.
STAFF_KINDS = frozenset({Kind.PRIVACY_OFFICER, Kind.ADMINISTRATOR})


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    patient = selectors.patient_get(actor=request.actor)
    if patient is None and request.actor.kind in STAFF_KINDS:
        # Officers and administrators have their own start page and menu (portal.views.start);
        # "This account is not linked to a patient record" only confused them (issue 19, item 4).
        return redirect("portal-start")
    studies = list(selectors.study_list(actor=request.actor)) if patient else []
    for study in studies:
        study.count = selectors.image_count_of(study)  # the one counting rule (selectors)
    # "Fetching your images" while a newly activated patient's history comes from the PACS.
    fetching = selectors.pacs_fetch_progress(actor=request.actor)
    return render(request, "imaging/home.html", {"patient": patient, "studies": studies, "fetching": fetching})


@require_GET
@never_cache
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    opened = viewing.study_open(actor=request.actor, study_id=study_id)
    return render(
        request,
        "imaging/study.html",
        {
            "study": opened.study,
            "cards": opened.cards,
            "integrity": opened.integrity,
            "report": opened.report,
            "reveal_groups": opened.reveal_groups,
        },
    )


def _viewer_context(opened: viewing.OpenedSeries) -> dict:
    config = _viewer_config(opened)
    for series in opened.strip:
        series.count = selectors.image_count_of(series)  # the one counting rule (selectors)
    count = selectors.ImageCount(config["count"]["images"], config["count"]["frames"])
    return {"study": opened.series.study, "series": opened.series, "config": config, "strip": opened.strip,
            "count": count}


@require_GET
@never_cache
def viewer(request: HttpRequest, study_id: int, series_id: int) -> HttpResponse:
    opened = viewing.series_open(actor=request.actor, study_id=study_id, series_id=series_id)
    return render(request, "imaging/viewer.html", _viewer_context(opened))


@require_GET
@never_cache
def viewer_data(request: HttpRequest, study_id: int, series_id: int) -> HttpResponse:
    """The series strip's switch: what the viewer page would show for this series, as JSON
    (the same audited read as opening the page; the HTML parts rendered and escaped here)."""
    opened = viewing.series_open(actor=request.actor, study_id=study_id, series_id=series_id)
    context = _viewer_context(opened)
    return JsonResponse({
        "config": context["config"],
        "series": opened.series.pk,
        "url": reverse("imaging-viewer", kwargs={"study_id": study_id, "series_id": series_id}),
        "title": render_to_string("imaging/_viewer_title.html", context, request),
        "headTitle": render_to_string("imaging/_viewer_head_title.html", context, request).strip(),
        "notice": render_to_string("imaging/_viewer_notice.html", context, request),
    })


@require_GET
@never_cache
def frame(request: HttpRequest, study_id: int, series_id: int, instance_id: int, frame: int) -> HttpResponse:
    instance = selectors.instance_get(actor=request.actor, study_id=study_id, series_id=series_id, instance_id=instance_id)
    return frame_response(request, instance, frame)


def frame_response(request: HttpRequest, instance: Instance, frame: int) -> HttpResponse:
    """One frame of an instance the caller's selector already narrowed, windowed as the query
    asks (``c``/``w``), as PNG. Not audited: the viewer's opening is. Callers: ``frame`` and the
    share recipient's ``sharing.views.share_open_frame``."""
    if instance.rows is None or frame >= instance.frames:
        raise Http404("No such frame.")
    try:
        center, width = _window(request)
    except (ValueError, RenderError) as exc:
        return _bad_window(exc)
    try:
        data = rendering.render_frame(instance, frame=frame, center=center, width=width, fmt="png")
    except RenderError as exc:
        return _cannot_render(exc)
    return _image_response(data)


@require_GET
@never_cache
def series_thumbnail(request: HttpRequest, study_id: int, series_id: int) -> HttpResponse:
    series = selectors.series_get(actor=request.actor, study_id=study_id, series_id=series_id)
    if not selectors.viewer_instances(series).exists():
        raise Http404("This series has no images.")
    try:
        data = rendering.render_thumbnail(series)
    except RenderError as exc:
        return _cannot_render(exc)
    return _image_response(data)


@require_GET
@never_cache
def report(request: HttpRequest, study_id: int) -> HttpResponse:
    opened = viewing.report_open(actor=request.actor, study_id=study_id)
    return render(request, "imaging/report.html", {"study": opened.study, "reports": opened.reports})


# The PDF is untrusted content: it may be framed only by our own report page (its <iframe>; the
# one response with frame-ancestors 'self' rather than 'none'), loads nothing, and runs no script
# of its own (docs/security.md §15).
PDF_CSP = {"default-src": [NONE], "script-src": [NONE], "style-src": [NONE], "img-src": [NONE], "font-src": [NONE],
           "connect-src": [NONE], "object-src": [NONE], "base-uri": [NONE], "form-action": [NONE],
           "frame-ancestors": [SELF]}


@require_GET
@never_cache
@xframe_options_sameorigin
@csp_replace(PDF_CSP)
def document_pdf(request: HttpRequest, study_id: int, series_id: int, instance_id: int) -> HttpResponse:
    instance = selectors.instance_get(actor=request.actor, study_id=study_id, series_id=series_id, instance_id=instance_id)
    data = selectors.document_pdf(instance)
    if data is None:
        raise Http404("This file holds no PDF.")
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Length"] = str(len(data))
    # The name is ours, never the document's title (docs/security.md §16).
    response["Content-Disposition"] = f'inline; filename="report-{study_id}-{instance_id}.pdf"'
    return response


@require_GET
@never_cache
def download_image(request: HttpRequest, study_id: int, series_id: int, instance_id: int) -> HttpResponse:
    require_recent_reauthentication(request, action="image_download")  # docs/security.md §6: downloads need a fresh password
    # The image first: another patient's answers 404 whatever the query string says.
    selectors.instance_get(actor=request.actor, study_id=study_id, series_id=series_id, instance_id=instance_id)
    try:
        index = int(request.GET.get("frame", "0"))
    except ValueError:
        return HttpResponseBadRequest("Invalid frame.", content_type="text/plain")
    try:
        center, width = _window(request)
    except (ValueError, RenderError) as exc:
        return _bad_window(exc)
    try:
        downloaded = viewing.instance_download(actor=request.actor, study_id=study_id, series_id=series_id,
                                               instance_id=instance_id, frame=index, center=center, width=width)
    except RenderError as exc:
        return _cannot_render(exc)
    instance, study = downloaded.instance, downloaded.instance.series.study
    response = _image_response(downloaded.data)
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
    patient = selectors.patient_get(actor=request.actor)
    results = None
    form = VerifyCopyForm(request=request)
    if request.method == "POST" and patient is not None:
        form = VerifyCopyForm(request.POST, request.FILES, request=request)
        if form.is_valid():
            files = form.cleaned_data["files"]
            try:
                results = viewing.copies_verify(actor=request.actor, uploads=((f.name, f.file) for f in files))
            finally:
                for f in files:
                    f.close()  # a temporary upload file is deleted when closed; nothing is kept
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "imaging/verify.html", {"patient": patient, "form": form, "results": results}, status=status)

"""The patient's export pages: list, request (passphrase shown once), progress, cancel,
download, revoke, dismiss the "ready" notice. Every view acts as ``request.actor`` through
``exports.selectors`` and ``exports.services`` (another patient's export is a 404); requesting and
downloading need a fresh reauthentication, checked here (allauth's decorator; for the download,
``core.reauth.reauthenticate_before_download``, which returns to this export's page) and again in
the service (docs/security.md §6). GET pages change nothing: the "ready" notice goes away when the
archive is downloaded or the patient dismisses it.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.reauth import download_ready, reauthenticate_before_download, reauthentication_required
from exports import selectors, services
from exports.forms import ExportRequestForm
from imaging.selectors import study_list


@require_GET
@never_cache
def export_list(request: HttpRequest) -> HttpResponse:
    exports = list(selectors.export_list(actor=request.actor)[:50])
    return render(request, "exports/list.html", {
        "exports": exports,
        "ready_notices": [e for e in exports if e.status == "ready" and e.notice_seen_at is None],
        "is_patient": request.actor.patient_id is not None,
    })


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required("export_new", allow_get=True)
def export_new(request: HttpRequest) -> HttpResponse:
    if request.actor.patient_id is None:
        raise PermissionDenied("Only a patient can export their own studies.")
    studies = list(study_list(actor=request.actor))
    form = ExportRequestForm(request.POST or None, studies=studies)
    if request.method == "POST" and form.is_valid():
        try:
            requested = services.export_request(actor=request.actor, study_ids=form.study_ids(),
                                                deidentify=form.deidentify)
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            # Rendered straight into this response, never stored in clear: shown once.
            return render(request, "exports/created.html",
                          {"export": requested.export, "passphrase": requested.passphrase})
    # A refused request is a 400 with its reasons on the form, like every other form here.
    return render(request, "exports/new.html", {"form": form, "has_studies": bool(studies),
                                                "deidentify_options": _deidentify_options()},
                  status=400 if request.method == "POST" else 200)


def _deidentify_options() -> list[str]:
    # Imported here: the de-identifier loads pydicom, which the other export pages never need.
    from imaging.dicom.deidentify import describe_options

    return [str(line) for line in describe_options()]


@require_GET
@never_cache
def export_detail(request: HttpRequest, export_id: int) -> HttpResponse:
    export = selectors.export_get(actor=request.actor, export_id=export_id, with_studies=True)
    return render(request, "exports/detail.html", {
        "export": export, "status": selectors.status_payload(export), "download_ready": download_ready(request),
    })


@require_GET
@never_cache
def export_status(request: HttpRequest, export_id: int) -> JsonResponse:
    export = selectors.export_get(actor=request.actor, export_id=export_id)
    return JsonResponse(selectors.status_payload(export))


@require_POST
@never_cache
def export_cancel(request: HttpRequest, export_id: int) -> HttpResponse:
    export = services.export_cancel(actor=request.actor, export_id=export_id)
    return redirect("exports-detail", export_id=export.pk)


@require_POST
@never_cache
def export_revoke(request: HttpRequest, export_id: int) -> HttpResponse:
    export = services.export_revoke(actor=request.actor, export_id=export_id)
    return redirect("exports-detail", export_id=export.pk)


@require_POST
@never_cache
def export_seen(request: HttpRequest, export_id: int) -> HttpResponse:
    services.export_mark_seen(actor=request.actor, export_id=export_id)
    return redirect("exports-list")


@require_POST
@never_cache
def export_download(request: HttpRequest, export_id: int) -> HttpResponse:
    export = selectors.export_get(actor=request.actor, export_id=export_id)
    back = reverse("exports-detail", args=[export.pk])
    if (confirm := reauthenticate_before_download(request, back=back, action="export_download")) is not None:
        return confirm
    try:
        download = services.export_download(actor=request.actor, export_id=export.pk)
    except services.ExportUnavailable as exc:
        export = selectors.export_get(actor=request.actor, export_id=export.pk, with_studies=True)
        return render(request, "exports/detail.html", {
            "export": export, "status": selectors.status_payload(export), "unavailable": str(exc),
        }, status=410)
    # Not a FileResponse: the server would send the file itself (sendfile) and we could not tell
    # a finished download from a broken one (exports.services, "Downloads"). Django closes the
    # stream when the server is done with the response, whatever happened.
    response = StreamingHttpResponse(download.chunks, content_type="application/zip")
    response["Content-Length"] = str(download.size)
    # The name is ours, never a header value (docs/security.md §16).
    response["Content-Disposition"] = content_disposition_header(True, f"lightbox-export-{export.pk}.zip")
    return response

"""The patient's sharing pages: the list of their pushes (with progress) and share links, sending
studies to a partner hospital, the progress a page polls, making and revoking a share link; and
the recipient's pages under ``/s/<token>/`` (no account: the access code, the emailed one-time
code, the shared studies and a read-only viewer, acting as the recipient ``Actor`` that
``sharing.links`` builds). Every view acts as ``request.actor`` through
``sharing.selectors`` and ``sharing.services`` (another patient's push is a 404); sending needs a
fresh reauthentication, checked here (allauth's decorator) and again in the service
(docs/security.md §6). GET pages change nothing.
"""

from __future__ import annotations

from allauth.account.decorators import reauthentication_required
from allauth.core.internal.ratelimit import Rate
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import ratelimit
from core.actor import request_origin
from imaging import selectors as imaging_selectors
from imaging.selectors import patient_own, study_list
from imaging.services import viewing
from imaging.views import _viewer_context, frame_response
from sharing import links, selectors, services
from sharing.forms import CodeForm, OtpForm, PushForm, ShareForm
from sharing.models import Push, Share


@require_GET
@never_cache
def sharing_list(request: HttpRequest) -> HttpResponse:
    pushes = list(selectors.push_list(actor=request.actor)[:100])
    return render(request, "sharing/list.html", {
        "pushes": pushes, "shares": links.share_list(actor=request.actor),
        "is_patient": request.actor.patient_id is not None,
    })


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required(allow_get=True)
def sharing_send(request: HttpRequest) -> HttpResponse:
    patient_own(actor=request.actor)  # an officer or administrator has no studies to send: 404
    studies = list(study_list(actor=request.actor))
    partners = list(selectors.partner_choices())
    initial = {"studies": request.GET.getlist("study")} if request.method == "GET" else None
    form = PushForm(request.POST or None, initial=initial, studies=studies, partners=partners)
    if request.method == "POST" and form.is_valid():
        try:
            services.push_request(actor=request.actor, study_ids=form.study_ids(), partner_id=form.partner_id())
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            return redirect("sharing-list")
    return render(request, "sharing/send.html", {"form": form, "has_studies": bool(studies), "has_partners": bool(partners)},
                  status=400 if request.method == "POST" else 200)


@require_GET
@never_cache
def push_status(request: HttpRequest, push_id: int) -> JsonResponse:
    push = selectors.push_get(actor=request.actor, push_id=push_id)
    return JsonResponse(selectors.status_payload(push))


@require_POST
def push_stop(request: HttpRequest, push_id: int) -> HttpResponse:
    """The patient stops a push still queued or sending; what the hospital already has stays there."""
    try:
        services.push_stop(actor=request.actor, push_id=push_id)
    except Push.DoesNotExist:
        raise Http404("No such push.") from None
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, _("Sending stopped. Images the hospital already received stay there."))
    return redirect("sharing-list")


# --- Share links: the patient's side ----------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
@reauthentication_required(allow_get=True)
def share_new(request: HttpRequest) -> HttpResponse:
    """Make a share link. The link and the code are shown once, in the answer to the POST (only
    their hashes are kept), with a QR code of the link."""
    patient_own(actor=request.actor)  # no studies of one's own: 404
    studies = list(study_list(actor=request.actor))
    initial = {"studies": request.GET.getlist("study")} if request.method == "GET" else None
    form = ShareForm(request.POST or None, initial=initial, studies=studies)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = links.share_create(
                actor=request.actor, study_ids=form.study_ids(), recipient_name=data["recipient_name"],
                recipient_organization=data["recipient_organization"], recipient_email=data["recipient_email"],
                days=data["days"], allow_download=data["access"] == "download",
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            return render(request, "sharing/share_created.html", {
                "share": created.share, "url": created.url, "code": created.code, "qr_svg": links.qr_svg(created.url),
                "passphrase": created.passphrase,
            })
    return render(request, "sharing/share_new.html", {"form": form, "has_studies": bool(studies)},
                  status=400 if request.method == "POST" else 200)


@require_POST
def share_revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    try:
        links.share_revoke(actor=request.actor, share_id=share_id)
    except Share.DoesNotExist:
        raise Http404("No such share.") from None
    return redirect("sharing-list")


# --- Share links: the recipient's side (no account) -------------------------------------------


def _rates() -> list[Rate]:
    # docs/security.md §27: guesses of codes are limited per client address and per link.
    return [Rate(getattr(settings, "SHARE_CODE_RATE", 20), 3600, "ip")]


def _allowed(request: HttpRequest, token: str) -> bool:
    """Count one guess against the client address and against this link (any string: an unknown
    token is counted the same way); False when either budget is used up."""
    ip = request_origin(request)["ip"] or "unknown"
    by_ip = ratelimit.take("share-ip", ip, _rates())
    by_link = ratelimit.take("share-link", links.session_key(token), _rates())
    return by_ip.allowed and by_link.allowed


def _refused(request: HttpRequest, form, template: str, *, status: int = 400) -> HttpResponse:
    """The one refusal (docs/security.md §27): an empty form and the same message, whatever was wrong."""
    return render(request, template, {"form": form, "refused": links.REFUSED_MESSAGE}, status=status)


def _too_many(request: HttpRequest) -> HttpResponse:
    response = render(request, "sharing/recipient_refused.html", {"too_many": True}, status=429)
    response["Retry-After"] = "3600"
    return response


@login_not_required
@require_http_methods(["GET", "POST"])
@never_cache
def share_open(request: HttpRequest, token: str) -> HttpResponse:
    """The link: asks for the access code, whatever the token (nothing is revealed before it)."""
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        if not _allowed(request, token):
            return _too_many(request)
        if not form.is_valid():
            return render(request, "sharing/recipient_code.html", {"form": form}, status=400)
        try:
            secret = links.share_unlock(token=token, code=form.cleaned_data["code"])
        except links.ShareRefused:
            return _refused(request, CodeForm(), "sharing/recipient_code.html")
        request.session[links.session_key(token)] = secret
        return redirect("sharing-open-verify", token=token)
    return render(request, "sharing/recipient_code.html", {"form": form})


@login_not_required
@require_http_methods(["GET", "POST"])
@never_cache
def share_open_verify(request: HttpRequest, token: str) -> HttpResponse:
    """The one-time code emailed to the recipient; then the shared studies."""
    secret = request.session.get(links.session_key(token))
    if not secret:
        return redirect("sharing-open", token=token)
    form = OtpForm(request.POST or None)
    if request.method == "POST":
        if not _allowed(request, token):
            return _too_many(request)
        if not form.is_valid():
            return render(request, "sharing/recipient_otp.html", {"form": form}, status=400)
        try:
            links.share_verify(token=token, secret=secret, otp=form.cleaned_data["otp"])
        except links.ShareRefused:
            return _refused(request, OtpForm(), "sharing/recipient_otp.html")
        request.session.cycle_key()  # a new session id once the visit is open
        return redirect("sharing-open-studies", token=token)
    return render(request, "sharing/recipient_otp.html", {"form": form})


def _recipient(request: HttpRequest, token: str) -> links.Recipient | None:
    origin = request_origin(request)
    try:
        return links.recipient_get(token=token, secret=request.session.get(links.session_key(token)),
                                   ip=origin["ip"], user_agent=origin["user_agent"])
    except links.ShareRefused:
        return None


@login_not_required
@require_GET
@never_cache
def share_open_studies(request: HttpRequest, token: str) -> HttpResponse:
    recipient = _recipient(request, token)
    if recipient is None:
        return redirect("sharing-open", token=token)
    studies = links.shared_studies_open(recipient=recipient)
    return render(request, "sharing/recipient_studies.html", {
        "token": token, "share": recipient.share, "patient": recipient.share.patient,
        "studies": [(s, imaging_selectors.viewer_series_strip(s)) for s in studies],
    })


@login_not_required
@require_GET
@never_cache
def share_open_viewer(request: HttpRequest, token: str, study_id: int, series_id: int) -> HttpResponse:
    """The read-only viewer (viewer.js), each opening an audited ``series_open`` as the recipient."""
    recipient = _recipient(request, token)
    if recipient is None:
        return redirect("sharing-open", token=token)
    opened = viewing.series_open(actor=recipient.actor, study_id=study_id, series_id=series_id)
    context = _viewer_context(opened)
    for item in context["config"]["slices"]:
        # The frames come through the share's own URL; no single-image download (no password here).
        tail = item["src"].split("/instances/", 1)[1]
        instance_id, frame = tail.split("/frames/")
        item["src"] = reverse("sharing-open-frame", kwargs={
            "token": token, "study_id": study_id, "series_id": series_id,
            "instance_id": int(instance_id), "frame": int(frame.removesuffix(".png"))})
        item["download"] = ""
    return render(request, "sharing/recipient_viewer.html",
                  {**context, "token": token, "share": recipient.share, "patient": recipient.share.patient})


@login_not_required
@require_GET
@never_cache
def share_open_frame(request: HttpRequest, token: str, study_id: int, series_id: int, instance_id: int, frame: int) -> HttpResponse:
    """One frame for the viewer; not audited (the viewer's opening is), like ``imaging-frame``."""
    recipient = _recipient(request, token)
    if recipient is None:
        raise Http404("No such image.")
    instance = imaging_selectors.instance_get(actor=recipient.actor, study_id=study_id, series_id=series_id, instance_id=instance_id)
    return frame_response(request, instance, frame)


@login_not_required
@require_POST
@never_cache
def share_open_download(request: HttpRequest, token: str) -> HttpResponse:
    """The share's encrypted archive, when the patient allowed downloads (a POST: it is recorded)."""
    recipient = _recipient(request, token)
    if recipient is None:
        return redirect("sharing-open", token=token)
    try:
        download = links.share_download(recipient=recipient)
    except links.ShareRefused:
        raise Http404("No download here.") from None
    except links.DownloadUnavailable as exc:
        return render(request, "sharing/recipient_refused.html", {"message": str(exc), "token": token}, status=409)
    response = FileResponse(download.file, as_attachment=True, filename=download.name, content_type="application/zip")
    response["Content-Length"] = str(download.size)
    return response

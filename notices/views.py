"""The notification centre: the patient's notices, opened and marked read by POST.

Patients only: for any other account (an officer, an administrator) these pages do not exist
(404), as the bell is not shown to them. Views call ``notices.selectors`` and
``notices.services`` and render; the notices hold no clinical detail and their list records no
access event (each notice links to the page that shows the news, which records its own).
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from notices import selectors, services


def _patient_only(request: HttpRequest) -> None:
    if request.actor.patient_id is None:
        raise Http404("No record.")


@require_GET
@never_cache
def notice_list(request: HttpRequest) -> HttpResponse:
    _patient_only(request)
    notices = selectors.notice_list(actor=request.actor)
    unread = sum(1 for n in notices if n.is_unread)
    return render(request, "notices/list.html", {"notices": notices, "unread": unread})


@require_POST
def notice_read(request: HttpRequest, notice_id: int) -> HttpResponse:
    """Mark one notice read; with ``open`` go on to the page it is about, else back to the list."""
    _patient_only(request)
    notice = services.notice_mark_read(actor=request.actor, notice_id=notice_id)
    # The link was written by our own services; checked anyway, as any redirect (docs/security.md §11).
    if "open" in request.POST and url_has_allowed_host_and_scheme(notice.link, allowed_hosts=None):
        return redirect(notice.link)
    return redirect("notices-list")


@require_POST
def notices_read_all(request: HttpRequest) -> HttpResponse:
    _patient_only(request)
    services.notices_mark_all_read(actor=request.actor)
    return redirect("notices-list")

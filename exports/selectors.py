"""Reads of exports for a given user: only the signed-in patient's own jobs.

Another patient's export (or a privacy officer looking) is ``Http404``, exactly like a missing
one (docs/security.md §9). Nothing here writes access events: job rows hold no clinical data beyond
counts, and the archive itself is only reached through ``services.export_download``.
"""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.http import Http404

from exports.models import ExportRequest


def exports_for_user(user) -> QuerySet[ExportRequest]:
    if not getattr(user, "is_authenticated", False):
        return ExportRequest.objects.none()
    return (
        ExportRequest.objects.filter(patient__user=user)
        .annotate(study_count=Count("studies", distinct=True))
        .order_by("-created_at", "-pk")
    )


def export_for_user(user, export_id: int) -> ExportRequest:
    export = exports_for_user(user).filter(pk=export_id).select_related("patient").first()
    if export is None:
        raise Http404("No such export.")
    return export


def unseen_ready_exports(user) -> QuerySet[ExportRequest]:
    """Ready archives the patient has not looked at yet (the in-portal notice)."""
    return exports_for_user(user).filter(status=ExportRequest.Status.READY, notice_seen_at__isnull=True)


def status_payload(export: ExportRequest) -> dict:
    """What the progress bar polls: status, percent and a plain-language label. No patient data."""
    return {
        "id": export.pk,
        "status": export.status,
        "label": str(export.get_status_display()),
        "progress": export.progress,
        "active": export.is_active,
        "ready": export.status == ExportRequest.Status.READY,
        "error": export.error,
    }

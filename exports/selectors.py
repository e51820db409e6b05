"""Reads of exports for an actor: a patient's own jobs only.

Every function starts from ``ExportRequest.objects.for_actor(actor)`` (``core.querysets``), so
another patient's export, or a privacy officer looking, is ``Http404`` exactly like a missing one
(docs/security.md §9). Nothing here writes access events: job rows hold no clinical data beyond
counts, and the archive itself is only reached through ``services.export_download``.
"""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.http import Http404

from core.actor import Actor
from exports.models import ExportRequest


def export_list(*, actor: Actor) -> QuerySet[ExportRequest]:
    """The actor's exports, newest first, with how many studies each holds.

    Callers: the downloads page. Records nothing."""
    return (
        ExportRequest.objects.for_actor(actor)
        .annotate(study_count=Count("studies", distinct=True))
        .order_by("-created_at", "-pk")
    )


def export_get(*, actor: Actor, export_id: int) -> ExportRequest:
    """One of the actor's exports; ``Http404`` for a missing one or anyone else's.

    Callers: the export pages. Records nothing."""
    export = ExportRequest.objects.for_actor(actor).filter(pk=export_id).select_related("patient").first()
    if export is None:
        raise Http404("No such export.")
    return export


def export_list_unseen_ready(*, actor: Actor) -> QuerySet[ExportRequest]:
    """Ready archives the patient has not downloaded or dismissed yet (the in-portal notice)."""
    return export_list(actor=actor).filter(status=ExportRequest.Status.READY, notice_seen_at__isnull=True)


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

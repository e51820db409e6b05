"""Reads of exports for an actor: a patient's own jobs only.

Every function starts from ``ExportRequest.objects.for_actor(actor)`` (``core.querysets``), so
another patient's export, or a privacy officer looking, is ``Http404`` exactly like a missing one
(docs/security.md §9). Nothing here writes access events: job rows hold no clinical data beyond
counts, and the archive itself is only reached through ``services.export_download``.
"""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from core.actor import Actor
from exports.models import ExportRequest
from imaging.models import Study


def _with_studies(queryset: QuerySet[ExportRequest], actor: Actor) -> QuerySet[ExportRequest]:
    """Each export's studies (date, description, modalities) in one extra query for the whole
    page, not one per row, as ``export.study_rows``, newest first; narrowed to what ``actor``
    reaches, like every read of patient data."""
    studies = (
        Study.objects.for_actor(actor)
        .only("pk", "patient_id", "study_date", "description", "modalities")
        .order_by("-study_date", "-pk")
    )
    return queryset.prefetch_related(Prefetch("studies", queryset=studies, to_attr="study_rows"))


def export_list(*, actor: Actor) -> QuerySet[ExportRequest]:
    """The actor's exports, newest first, with how many studies each holds and which
    (``study_rows``: two queries for any number of exports).

    Callers: the downloads page. Records nothing."""
    return _with_studies(
        ExportRequest.objects.for_actor(actor)
        .annotate(study_count=Count("studies", distinct=True))
        .order_by("-created_at", "-pk"),
        actor,
    )


def export_get(*, actor: Actor, export_id: int, with_studies: bool = False) -> ExportRequest:
    """One of the actor's exports (``with_studies``: and its studies as ``study_rows``, for the
    export page; the progress poll needs none); ``Http404`` for a missing one or anyone else's.

    Callers: the export pages. Records nothing."""
    exports = ExportRequest.objects.for_actor(actor).filter(pk=export_id).select_related("patient")
    export = (_with_studies(exports, actor) if with_studies else exports).first()
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

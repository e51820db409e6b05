"""Reads of sharing for an actor: a patient's own pushes only.

Every function starts from ``Push.objects.for_actor(actor)`` (``core.querysets``), so another
patient's push, or a privacy officer looking, is ``Http404`` exactly like a missing one
(docs/security.md §9). Nothing here records an access event: a push row holds the partner's name,
study ids and counts, and the share itself is recorded when it completes.
"""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from core.actor import Actor
from imaging.models import Patient, Study
from sharing.models import Partner, Push


def partner_choices() -> QuerySet[Partner]:
    """Active partners, by name: what a patient may send to. No patient data."""
    return Partner.objects.filter(active=True).order_by("name")


def push_list(*, actor: Actor) -> QuerySet[Push]:
    """The actor's pushes, newest first, with their partner and studies. Callers: /sharing/."""
    return (
        Push.objects.for_actor(actor)
        .select_related("partner")
        .prefetch_related(Prefetch("studies", queryset=Study.objects.order_by("-study_date", "pk")))
        .order_by("-created_at", "-pk")
    )


def push_get(*, actor: Actor, push_id: int) -> Push:
    """One of the actor's pushes; ``Http404`` for a missing one or anyone else's."""
    push = push_list(actor=actor).filter(pk=push_id).first()
    if push is None:
        raise Http404("No such push.")
    return push


def status_payload(push: Push) -> dict:
    """What the progress bar polls: status, counts and a plain label. No patient data."""
    return {
        "id": push.pk,
        "status": push.status,
        "label": str(push.get_status_display()),
        "sent": push.sent,
        "total": push.total,
        "percent": push.percent,
        "active": push.is_active,
        "error": push.error,
    }


def pushes_for_patient(*, actor: Actor, patient: Patient) -> QuerySet[Push]:
    """Every push of ``patient``, oldest first, for the privacy office's ``list_shares``.

    Callers: the command, with an officer or system actor that may reach the patient."""
    return push_list(actor=actor).filter(patient=patient).order_by("created_at", "pk")

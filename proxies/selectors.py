"""Reads for proxies: the grants a person holds, and the proxies a patient has."""

from __future__ import annotations

from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from audit.models import AccessEvent
from core.actor import Actor, Kind
from proxies.models import ProxyCode, ProxyGrant
from proxies.services import grant_allows

# The session key holding the grant a person acts under (proxies.views.switch; portal.actors).
SESSION_KEY = "proxy_grant_id"


def grants_held(*, user_id: int) -> list[ProxyGrant]:
    """The grants ``user_id`` may act under now (the header switcher), with the patient."""
    grants = ProxyGrant.objects.active().filter(proxy_id=user_id).select_related("patient").order_by("since")
    return [g for g in grants if grant_allows(g) is not None]


def grant_in_force(*, user_id: int, grant_id: int) -> tuple[ProxyGrant, frozenset[str]] | None:
    """The grant ``user_id`` chose in the switcher, and what it allows, if it is still in force
    (checked on every request by ``portal.actors``: never cached past its end)."""
    grant = ProxyGrant.objects.active().filter(pk=grant_id, proxy_id=user_id).select_related("patient").first()
    if grant is None:
        return None
    allows = grant_allows(grant)
    return None if allows is None else (grant, allows)


def proxies_of(*, actor: Actor) -> list[ProxyGrant]:
    """Every proxy the patient has or had (newest first), for "People who can act for me", each
    with ``last_use``: the later of their last switch to the patient and their newest event in the
    patient's access log (a read here, never a write per request)."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        return []
    newest_event = (
        AccessEvent.objects.filter(patient_id=OuterRef("patient_id"), actor_type=AccessEvent.ActorType.PROXY,
                                   actor_ref=Concat(Value("user:"), Cast(OuterRef("proxy_id"), CharField())))
        .order_by("-occurred_at").values("occurred_at")[:1]
    )
    grants = list(
        ProxyGrant.objects.filter(patient_id=actor.patient_id).annotate(last_event=Subquery(newest_event)).order_by("-since")
    )
    for g in grants:
        g.last_use = max((t for t in (g.last_used_at, g.last_event) if t is not None), default=None)
    return grants


def invites_pending(*, actor: Actor) -> list[ProxyCode]:
    """The patient's email invitations not yet used and not expired."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        return []
    return list(
        ProxyCode.objects.filter(patient_id=actor.patient_id, used_at__isnull=True, revoked_at__isnull=True,
                                 expires_at__gt=timezone.now()).exclude(invited_email="").order_by("-created_at")
    )

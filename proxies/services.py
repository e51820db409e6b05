"""Writes for proxies: codes, grants, switching whose record a proxy sees, ending a grant
(docs/security.md §29).

A code has the same format and storage rules as an activation code (``accounts.services``): 12
Crockford base32 symbols, only a keyed hash stored, single-use, expiring, checked with the
patient's date of birth at the same per-IP rate limit, and a wrong code and a wrong date of birth
answer the same way (``ProxyCodeError``).
"""

from __future__ import annotations

import datetime as dt
import secrets

from allauth.core.exceptions import RateLimited
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts import ratelimit
from accounts.services import normalize_activation_code
from core import crypto
from core.actor import Actor, Kind
from imaging.models import Patient
from proxies.models import ProxyCode, ProxyGrant, Relationship, Scope

_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PURPOSE = "proxy"
# Relationships the growing-up rules apply to: a caregiver is chosen by an adult patient.
GROWING_UP = frozenset({Relationship.PARENT, Relationship.GUARDIAN})
# What each scope allows beyond seeing scans (core.actor.Actor.allows).
SCOPE_ALLOWS = {
    Scope.VIEW: frozenset({"log"}),
    Scope.VIEW_CONSENT: frozenset({"log", "consent"}),
    Scope.FULL: frozenset({"log", "consent", "full"}),
}


class ProxyCodeError(Exception):
    """The code and date of birth do not match a usable proxy code (deliberately vague)."""


def age_on(birth_date: dt.date | None, today: dt.date) -> int | None:
    if birth_date is None:
        return None
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def grant_allows(grant: ProxyGrant, *, today: dt.date | None = None) -> frozenset[str] | None:
    """What ``grant`` allows today beyond seeing scans, or None when it no longer reaches the record.

    The growing-up rules (a parent's or guardian's grant only): from ``PROXY_AGE_RESTRICTED`` the
    access log and consent need the young person's agreement; from ``PROXY_AGE_END`` the grant
    reaches nothing (``proxy_ages_apply`` then ends it for good and tells both)."""
    if not grant.is_active():
        return None
    allows = SCOPE_ALLOWS[Scope(grant.scope)]
    if grant.relationship in GROWING_UP:
        age = age_on(grant.patient.birth_date, today or timezone.localdate())
        if age is not None and age >= settings.PROXY_AGE_END:
            return None
        if age is not None and age >= settings.PROXY_AGE_RESTRICTED and grant.young_person_agreed_at is None:
            allows = allows - {"log", "consent"}
    return allows


def proxy_code_issue(
    *, patient: Patient, relationship: str, scope: str = Scope.VIEW, expires_days: int | None = None,
    ends_on: dt.date | None = None,
) -> str:
    """Create a proxy code for ``patient`` and return it in clear, once. Callers: hospital staff
    (``issue_proxy_code``) and ``proxy_invite`` (an adult patient)."""
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))  # 60 bits, as activation codes
    now = timezone.now()
    days = expires_days if expires_days is not None else settings.ACTIVATION_CODE_TTL_DAYS
    row = ProxyCode(
        patient=patient, relationship=relationship, scope=scope, ends_on=ends_on,
        code_hash=crypto.keyed_hash(code, purpose=_PURPOSE), expires_at=now + dt.timedelta(days=days),
    )
    row.full_clean()
    row.save()
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


@transaction.atomic
def proxy_code_redeem(*, actor: Actor, code: str, birth_date: dt.date, name: str) -> ProxyGrant:
    """The signed-in ``actor`` (their own account, second factor passed) becomes a proxy for the
    patient the code was issued for, named ``name`` to the patient and in the log. Rate limited per client IP like activation codes; a wrong
    code, a wrong date of birth, a used or expired code all raise ``ProxyCodeError``."""
    if actor.user_id is None or actor.kind not in (Kind.PATIENT, Kind.PROXY):
        raise PermissionDenied("Only a signed-in person can use a proxy code.")
    if not ratelimit.consume(action="activation", actor=actor):
        raise RateLimited
    digest = crypto.keyed_hash(normalize_activation_code(code), purpose=_PURPOSE)
    row = ProxyCode.objects.select_for_update(of=("self",)).select_related("patient").filter(code_hash=digest).first()
    if row is None or not row.is_usable or row.patient.birth_date != birth_date:
        raise ProxyCodeError
    if row.patient.user_id == actor.user_id:
        raise ProxyCodeError  # one's own record needs no proxy
    now = timezone.now()
    row.used_at, row.used_by_id = now, actor.user_id
    row.save(update_fields=["used_at", "used_by"])
    # A new code for the same pair replaces the open grant (new scope, new end).
    ProxyGrant.objects.filter(patient=row.patient, proxy_id=actor.user_id, ended_at__isnull=True).update(
        ended_at=now, ended_by="Replaced by a new code", end_reason="replaced"
    )
    ends_at = None
    if row.ends_on is not None:
        ends_at = dt.datetime.combine(row.ends_on + dt.timedelta(days=1), dt.time(), tzinfo=timezone.get_current_timezone())
    grant = ProxyGrant(
        patient=row.patient, proxy_id=actor.user_id, proxy_name=name.strip(), relationship=row.relationship, scope=row.scope,
        since=now, ends_at=ends_at, code=row,
    )
    grant.full_clean(exclude=["code"])
    grant.save()
    return grant


def proxy_switch(*, actor: Actor, grant_id: int | None) -> ProxyGrant | None:
    """Check that the signed-in person may act under ``grant_id`` now (None: their own records)
    and mark it used. The view keeps the choice in the session; ``portal.actors`` checks the
    grant again on every request."""
    if actor.user_id is None:
        raise PermissionDenied
    if grant_id is None:
        return None
    grant = ProxyGrant.objects.active().select_related("patient").filter(pk=grant_id, proxy_id=actor.user_id).first()
    if grant is None or grant_allows(grant) is None:
        raise PermissionDenied("This grant has ended.")
    ProxyGrant.objects.filter(pk=grant.pk).update(last_used_at=timezone.now())
    return grant


def _end(grant: ProxyGrant, *, by: str, reason: str) -> ProxyGrant:
    grant.ended_at, grant.ended_by, grant.end_reason = timezone.now(), by, reason
    grant.save(update_fields=["ended_at", "ended_by", "end_reason"])
    return grant


@transaction.atomic
def proxy_end(*, actor: Actor, grant_id: int, reason: str = "") -> ProxyGrant:
    """The patient ends a proxy's access to their record (takes effect on the proxy's next
    request). A proxy cannot end or add proxies (it acts for the patient only within its scope);
    another patient's grant is ``ProxyGrant.DoesNotExist`` (a 404)."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        raise PermissionDenied("Only the patient manages who can act for them.")
    grant = ProxyGrant.objects.select_for_update().get(pk=grant_id, patient_id=actor.patient_id, ended_at__isnull=True)
    return _end(grant, by="You", reason=reason or "ended by the patient")


@transaction.atomic
def proxy_end_by_office(*, grant_id: int, reason: str) -> ProxyGrant:
    """The privacy office ends a grant (``end_proxy``)."""
    grant = ProxyGrant.objects.select_for_update().get(pk=grant_id, ended_at__isnull=True)
    return _end(grant, by="The privacy office", reason=reason)

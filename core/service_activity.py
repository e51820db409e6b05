"""What service tokens do with the APIs: counted per day, lookups that found nothing kept one by one.

Writers (services) are called by ``core.api`` for every authenticated request and by the API views
(``consent/api.py``, ``audit/api.py``) when a patient or study they were asked about is not there
or not reachable. The reader, ``service_activity_summary``, is the privacy office's page
(``flags/views/services_activity.py``). docs/security.md §22.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.http import Http404
from django.utils import timezone

from core import crypto
from core.actor import Actor
from core.models import ServiceAccount, ServiceRequestDay, ServiceRequestMiss

# The office's page counts the last 30 days: long enough to see a slow probe, short enough that
# the numbers describe what a token does now.
SUMMARY_DAYS = 30
RECENT_MISSES = 50


def subject_hash(issuer: str, mrn: str) -> str:
    """The keyed hash a miss stores instead of the MRN (why: ``ServiceRequestMiss``)."""
    return crypto.keyed_hash(f"{issuer}|{mrn}", purpose="api-miss")


def _count(account_id: int, *, limited: bool) -> None:
    today = timezone.now().date()
    changes = {"requests": F("requests") + 1}
    if limited:
        changes["rate_limited"] = F("rate_limited") + 1
    rows = ServiceRequestDay.objects.filter(service_account_id=account_id, day=today)
    if rows.update(**changes):
        return
    try:
        with transaction.atomic():
            ServiceRequestDay.objects.create(service_account_id=account_id, day=today, requests=1, rate_limited=int(limited))
    except IntegrityError:  # another request made today's row first
        rows.update(**changes)


@transaction.atomic
def service_request_count(*, account: ServiceAccount, limited: bool = False) -> None:
    """Count one authenticated API request of ``account`` (and whether it was answered 429), and
    note when the token was last used. Caller: ``core.api.api_endpoint``, for every request
    that passed the token and scope checks."""
    ServiceAccount.objects.filter(pk=account.pk).update(last_used_at=timezone.now())
    _count(account.pk, limited=limited)


@dataclass(frozen=True)
class Miss:
    """One thing a request named that matched nothing: a patient (issuer, MRN) or, for a
    request that named only studies, ``None`` and how many."""

    patient: tuple[str, str] | None = None
    unknown: int = 1


@transaction.atomic
def service_request_miss_note(*, actor: Actor, endpoint: str, misses: Iterable[Miss]) -> list[ServiceRequestMiss]:
    """Keep one row per patient named (or per request, for studies alone) that matched nothing,
    for the privacy office. Callers: the API views, as the token's actor, before they answer 404
    or reject an event. The same patient named several times in one request is one row."""
    if actor.service_account_id is None:
        raise ValueError("only a service token's requests are noted")
    merged: dict[str, int] = {}
    for miss in misses:
        key = subject_hash(*miss.patient) if miss.patient else ""
        merged[key] = merged.get(key, 0) + miss.unknown
    now = timezone.now()
    rows = [
        ServiceRequestMiss(service_account_id=actor.service_account_id, occurred_at=now, endpoint=endpoint,
                           subject_hash=key, unknown=n, ip=actor.ip or None)
        for key, n in merged.items()
    ]
    for row in rows:
        row.full_clean(exclude=["service_account"])
    return ServiceRequestMiss.objects.bulk_create(rows)


# --- The privacy office's page -------------------------------------------------------------------


@dataclass(frozen=True)
class TokenActivity:
    account: ServiceAccount
    requests: int
    rate_limited: int
    misses: int  # lookups that found nothing (a cohort's unknown studies each count)
    patients_missed: int  # distinct patients named that matched nothing
    last_miss: dt.datetime | None


@dataclass(frozen=True)
class ServiceActivity:
    since: dt.date
    tokens: list[TokenActivity]
    recent: list[ServiceRequestMiss]


def service_activity_summary(*, actor: Actor) -> ServiceActivity:
    """Per token over the last ``SUMMARY_DAYS`` days: requests, 429 answers, lookups that found
    nothing, last use; and the latest misses. No patient data (misses hold keyed hashes).
    Officers only; anyone else gets 404, like every privacy-office page."""
    if not actor.is_officer:
        raise Http404("No such page.")
    since = timezone.now().date() - dt.timedelta(days=SUMMARY_DAYS - 1)
    start = timezone.make_aware(dt.datetime.combine(since, dt.time.min), dt.UTC)
    days = {
        row["service_account"]: row
        for row in ServiceRequestDay.objects.filter(day__gte=since).values("service_account")
        .annotate(requests=Sum("requests"), rate_limited=Sum("rate_limited"))
    }
    missed = {
        row["service_account"]: row
        for row in ServiceRequestMiss.objects.filter(occurred_at__gte=start).values("service_account")
        .annotate(misses=Sum("unknown"), last=Max("occurred_at"),
                  patients=Count("subject_hash", distinct=True, filter=~Q(subject_hash="")))
    }
    tokens = []
    for account in ServiceAccount.objects.order_by("name"):
        d, m = days.get(account.pk, {}), missed.get(account.pk, {})
        tokens.append(TokenActivity(
            account=account, requests=d.get("requests") or 0, rate_limited=d.get("rate_limited") or 0,
            misses=m.get("misses") or 0, patients_missed=m.get("patients") or 0, last_miss=m.get("last"),
        ))
    recent = list(ServiceRequestMiss.objects.select_related("service_account")[:RECENT_MISSES])
    return ServiceActivity(since=since, tokens=tokens, recent=recent)


"""Per-token API rate limits (docs/security.md §22), counted in the shared cache (Redis).

Built on django-allauth's limiter, the one the sign-in flows and ``accounts/ratelimit.py`` use:
its sliding-window rule (``apply_rate``: a hit is allowed while fewer than ``amount`` hits fall
in the last ``duration`` seconds), its rate type and its cache lock. What an API needs and
allauth's ``consume`` does not give is added here: every rate is checked before any is counted
(a refused request uses up nothing), a hit can count more than one (a batch with several unknown
patients), and the answer says how many seconds until a slot frees (``Retry-After``).

Two budgets per token: ``requests`` (every call, ``API_RATE_LIMIT`` a minute with at most
``API_RATE_BURST`` in any second) and ``lookups`` (calls about a patient or study that is not
there or not reachable, ``API_PROBE_LIMIT`` an hour), the tighter one that stops probing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from allauth.core.internal.ratelimit import Rate, apply_rate, cache_lock
from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused


def request_rates() -> list[Rate]:
    return [Rate(settings.API_RATE_LIMIT, 60, "token"), Rate(settings.API_RATE_BURST, 1, "token")]


def lookup_rates() -> list[Rate]:
    return [Rate(settings.API_PROBE_LIMIT, 3600, "token")]


def _key(budget: str, account_id: int) -> str:
    return f"api:rl:{budget}:{account_id}"


def _wait(history: list[float], rate: Rate, count: int, now: float) -> float:
    """Seconds until ``count`` more hits fit under ``rate`` (0 if they fit now). ``history`` is
    newest first and already pruned to the window."""
    if len(history) + count <= rate.amount:
        return 0.0
    if count > rate.amount:
        return float(rate.duration)
    # The hits that must leave the window first are the oldest ones; the last of them is here.
    return history[rate.amount - count] + rate.duration - now


def take(budget: str, account_id: int, rates: list[Rate], *, count: int = 1, dry_run: bool = False, force: bool = False) -> Verdict:
    """Count ``count`` hits against every rate of ``budget`` for this token, or none if any rate is
    used up (then ``retry_after`` says when one frees). ``dry_run`` only asks; ``force`` counts
    hits that already happened even past the limit (a lookup that found nothing was answered
    before it could be refused), which pushes the next free slot further out.

    A counter held by another request for longer than allauth's lock wait (1 s) answers
    "refused, retry in 1 s", as allauth does: contention never lets a request through uncounted.
    """
    key = _key(budget, account_id)
    with cache_lock(key) as locked:
        if not locked:
            return Verdict(False, 1)
        now = time.time()
        stored = cache.get(key) or {}
        histories: dict[str, list[float]] = {}
        wait = 0.0
        for rate in rates:
            # dry_run=True: allauth's rule only drops the hits that left the window.
            _, history = apply_rate(list(stored.get(str(rate), [])), now, rate, dry_run=True)
            histories[str(rate)] = history
            wait = max(wait, _wait(history, rate, count, now))
        if wait > 0 and not force:
            return Verdict(False, max(1, math.ceil(wait)))
        if not dry_run:
            for rate in rates:
                # Newest first, and never more than the rate can look at.
                histories[str(rate)] = ([now] * count + histories[str(rate)])[: rate.amount]
            cache.set(key, histories, max(r.duration for r in rates))
        return Verdict(wait <= 0, max(1, math.ceil(wait)) if wait > 0 else 0)


def request_take(account_id: int) -> Verdict:
    """One API call by this token (``core.api.api_endpoint``)."""
    return take("requests", account_id, request_rates())


def lookups_left(account_id: int) -> Verdict:
    """Whether this token may still ask about patients: allowed while its lookup budget has room."""
    return take("lookups", account_id, lookup_rates(), dry_run=True)


def lookups_missed(account_id: int, count: int = 1) -> None:
    """Count ``count`` lookups that found nothing against the token's lookup budget."""
    take("lookups", account_id, lookup_rates(), count=min(count, settings.API_PROBE_LIMIT), force=True)

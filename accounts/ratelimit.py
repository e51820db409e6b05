"""Rate limits on guessing codes, keyed by the Actor's client IP and account (docs/security.md §2-3).

allauth's ``ratelimit.consume`` reads the IP and the user from a request; the services that check
codes take an Actor instead (STYLE.md: services never see the request), so this applies the same
rates (``ACCOUNT_RATE_LIMITS``, parsed by allauth) in allauth's own cache format to the values the
Actor carries. The Actor's IP is the one allauth's adapter reads (a forwarded address only from
the configured trusted proxy), so a forged X-Forwarded-For gets no fresh budget.
"""

from __future__ import annotations

import time

from allauth.core.internal.ratelimit import apply_rate, cache_lock, get_rates, truncate_ip
from django.core.cache import cache

from core.actor import Actor

_APP = "allauth.account"


def _source(per: str, actor: Actor) -> tuple[str, str]:
    if per == "ip":
        return ("ip", truncate_ip(actor.ip or "unknown"))
    if per == "user":
        if actor.user_id is None:
            raise ValueError("a per-account rate limit needs a signed-in actor")
        return ("user", str(actor.user_id))
    raise ValueError(f"unsupported rate limit key {per!r}")


def consume(*, action: str, actor: Actor, dry_run: bool = False) -> bool:
    """Count one attempt at ``action`` against every rate configured for it; False (and nothing
    more counted) once one of them is used up. ``dry_run`` only asks whether an attempt would be
    allowed: a right code is never counted, only wrong ones are."""
    for rate in get_rates(app=_APP, action=action):
        key = ":".join(["allauth", "rl", _APP, action, str(rate), *_source(rate.per, actor)])
        with cache_lock(key) as locked:
            if not locked:
                return False  # as allauth does: a contended counter refuses rather than waits
            allowed, history = apply_rate(cache.get(key, []), time.time(), rate, dry_run=dry_run)
            if not allowed:
                return False
            if not dry_run:
                cache.set(key, history, rate.duration)
    return True

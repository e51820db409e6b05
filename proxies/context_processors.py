"""The header's proxy switcher ("Viewing: Sam Doe — your child") and which menu links a proxy's
grant hides. Lazy: only pages that show the header for a signed-in person pay one query."""

from __future__ import annotations

from functools import cache

from django.http import HttpRequest

from core.actor import Kind
from proxies.selectors import grants_held
from proxies.services import proxy_code_held

# Menu links a proxy sees only with this capability (proxies.middleware has the rule per page).
CAPABILITIES = ("log", "consent", "full")


def switcher(request: HttpRequest) -> dict:
    @cache
    def held() -> list:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return []
        return grants_held(user_id=user.pk)

    @cache
    def current():
        actor = getattr(request, "actor", None)
        if actor is None or not actor.is_proxy:
            return None
        return next((g for g in held() if g.pk == actor.proxy_grant_id), None)

    @cache
    def hides() -> frozenset[str]:
        actor = getattr(request, "actor", None)
        if actor is None or not actor.is_proxy:
            return frozenset()
        return frozenset(c for c in CAPABILITIES if not actor.allows(c))

    @cache
    def code_held() -> bool:
        # Only an account with no record of its own (signed up with a proxy code) can hold one:
        # patients pay no query for this.
        actor = getattr(request, "actor", None)
        if actor is None or actor.kind != Kind.PATIENT or actor.patient_id is not None:
            return False
        return proxy_code_held(actor=actor) is not None

    return {"PROXY_GRANTS": held, "PROXY_CURRENT": current, "PROXY_HIDES": hides, "PROXY_CODE_HELD": code_held}

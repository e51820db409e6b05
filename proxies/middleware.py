"""What a proxy may open, by page, and a plain explanation instead of a bare "Access denied"
(docs/security.md §28).

A proxy Actor reaches one patient's record (``portal.actors``); this decides which of that
record's pages its grant allows. Pages are allowed by name (an allow-list: a page added later is
closed to proxies until it is listed here): scans and notices for every scope; the access log
with "log"; consent with "consent"; exports and flags with "full"; sharing is the patient's alone. The services check
the same capability themselves (``Actor.allows``), so no other caller skips it. Nothing about the
patient's own account (sign-in, proxies, notification settings) is ever a proxy's.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import User
from proxies.models import ProxyGrant
from proxies.selectors import SESSION_KEY, grant_in_force
from proxies.services import GROWING_UP, SCOPE_ALLOWS

# URL name prefix -> the capability it needs ("" = any scope). Checked longest prefix first.
PROXY_PAGES: dict[str, str] = {
    "home": "",
    "imaging-": "",
    "notices-": "",
    "portal-": "",
    "proxies-switch": "",
    "proxies-redeem": "",
    "accounts-": "",  # the proxy's own account (their own password and second factor)
    "account_": "",  # allauth's pages, also the proxy's own account
    "audit-log": "log",
    "consent-": "consent",
    "exports-": "full",
    "flags-": "full",
    # Sharing (links for doctors, sends to other hospitals) stays the patient's own decision:
    # sharing's services act for the patient only, so no proxy page is listed for it.
}


def required_capability(url_name: str | None) -> str | None:
    """The capability a page needs from a proxy, or None when no proxy may open it."""
    if not url_name:
        return None
    for prefix in sorted(PROXY_PAGES, key=len, reverse=True):
        if url_name.startswith(prefix):
            return PROXY_PAGES[prefix]
    return None


class ProxyScopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        # Decided from the session and the grant, not from ``request.actor``: the Actor is built
        # lazily when a view first uses it (after a password re-entry resumes a POST), and
        # building it here would fix it before that.
        grant_id = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
        if grant_id is None or not request.user.is_authenticated or request.user.role != User.Role.PATIENT:
            return None
        found = grant_in_force(user_id=request.user.pk, grant_id=grant_id)
        if found is None:
            # The grant chosen in the switcher ended since the last request: say so once, then
            # this browser shows the person's own records again.
            request.session.pop(SESSION_KEY, None)
            grant = ProxyGrant.objects.filter(pk=grant_id, proxy_id=request.user.pk).select_related("patient").first()
            return render(request, "proxies/ended.html", {"grant": grant}, status=403)
        grant, allows = found
        name = request.resolver_match.url_name if request.resolver_match else None
        if name and request.resolver_match.namespace:
            name = None  # namespaced apps (the admin) are never a proxy's
        needed = required_capability(name)
        if needed is not None and (needed == "" or needed in allows):
            return None
        # Not allowed because the young person grew up (their scope would allow it), or by scope.
        grown_up = needed in SCOPE_ALLOWS[grant.scope] and grant.relationship in GROWING_UP
        return render(
            request, "proxies/not_allowed.html",
            {"needed": needed, "grant": grant, "grown_up": grown_up, "age": settings.PROXY_AGE_RESTRICTED},
            status=403,
        )

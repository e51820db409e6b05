"""Cross-cutting middleware: request ids, the Actor of each request, no-store for signed-in pages."""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record (so a support ticket can be traced)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only accept a well-formed id from upstream; anything else could forge log lines.
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if 8 <= len(incoming) <= 64 and incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        request.request_id = rid
        token = _request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = rid
        return response


class NoStoreForSignedInMiddleware:
    """Every response to a signed-in user carries ``Cache-Control: no-store`` (docs/security.md §15).

    Views add ``never_cache`` too; this catches the pages of libraries (allauth, admin) so that
    nothing personal is kept by a shared computer's browser cache or a proxy.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            from django.utils.cache import add_never_cache_headers

            add_never_cache_headers(response)
        return response


class ActorMiddleware:
    """Sets ``request.actor`` (``portal.actors``), the one value views hand to services and
    selectors. Built on first use, so pages that touch no patient data pay nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Imported here: LOGGING loads this module (RequestIdFilter) before the apps are ready.
        from django.utils.functional import SimpleLazyObject

        from portal.actors import actor_for_request

        request.actor = SimpleLazyObject(lambda: actor_for_request(request))
        return self.get_response(request)

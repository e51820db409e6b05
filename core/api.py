"""The ``/api/v1/`` conventions: bearer tokens with scopes, JSON in and out, JSON errors.

Written by hand because the APIs are few and small: a framework (DRF, django-ninja) would bring
a second auth, serializer and settings system for a handful of endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from core import crypto
from core.actor import Actor, request_origin
from core.models import ServiceAccount

# A batch body above this is refused before parsing; 500 events of ~1 KB fit comfortably.
MAX_BODY_BYTES = 2 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def api_error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    response = JsonResponse({"error": code, "message": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="lightbox"'
    return response


def authenticate(request: HttpRequest) -> ServiceAccount:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Send 'Authorization: Bearer <token>'.")
    account = ServiceAccount.objects.filter(token_hash=crypto.keyed_hash(token.strip(), purpose="api-token")).first()
    # A revoked token and an unknown one look the same to the caller.
    if account is None or not account.is_active:
        raise ApiError(401, "unauthenticated", "The token is not valid.")
    return account


def json_body(request: HttpRequest) -> Any:
    if len(request.body) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes; send smaller batches.")
    content_type = request.content_type or ""
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json or application/fhir+json).")
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # [[[[... a few thousand deep exhausts the parser's stack
        raise ApiError(400, "invalid_json", "The body is nested too deeply.") from exc


def api_endpoint(*, scope: str, methods: tuple[str, ...]) -> Callable:
    """Decorate an API view: bearer token with ``scope`` required, listed methods only.

    The view receives ``request.service_account`` and ``request.actor`` (the token's Actor, which
    it hands to services) and returns a JSON response (or raises
    ``ApiError``). Session cookies are ignored: APIs are for systems, not browsers, so CSRF does
    not apply and the second-factor gate (for humans) is not involved.
    """
    if scope not in ServiceAccount.Scope.values:
        raise ValueError(f"unknown scope {scope}")

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = api_error(405, "method_not_allowed", f"Use {', '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                account = authenticate(request)
                if scope not in account.scopes:
                    raise ApiError(403, "insufficient_scope", f"This token lacks the '{scope}' scope.")
                ServiceAccount.objects.filter(pk=account.pk).update(last_used_at=timezone.now())
                request.service_account = account
                request.actor = Actor.for_service(account, **request_origin(request))
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return api_error(exc.status, exc.code, exc.message, **exc.extra)

        return login_not_required(csrf_exempt(never_cache(wrapper)))

    return decorator

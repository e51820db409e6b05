"""The ``/api/v1/`` conventions: bearer tokens with scopes, JSON in and out, JSON errors.

Written by hand because the APIs are few and small: a framework (DRF, django-ninja) would bring
a second auth, serializer and settings system for a handful of endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from core import crypto, ratelimit, service_activity
from core.actor import Actor, request_origin
from core.models import ServiceAccount
from core.service_activity import Miss

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


def _body_limit() -> int:
    # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE itself (RequestDataTooBig, an HTML
    # 400); below whichever limit is lower, the API answers JSON 413 itself first.
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return MAX_BODY_BYTES if django_limit is None else min(MAX_BODY_BYTES, django_limit)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"The body is over {limit} bytes; send smaller batches.")


def read_body(request: HttpRequest) -> bytes:
    """The request body, or ``ApiError`` 413 (JSON, as the OpenAPI document says) when it is over
    the limit: refused on its Content-Length before anything is read, and by what was read when
    there is none (a chunked body, which Django alone would read as empty)."""
    limit = _body_limit()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # as Django reads it
    if length > limit:
        raise _too_large(limit)
    if not length and request.META.get("wsgi.input_terminated"):
        # Chunked: the server ends the stream (WSGI's wsgi.input_terminated); read one byte past
        # the limit at most, so memory stays bounded whatever the client sends.
        data = request.META["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        return data
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise _too_large(limit) from exc
    if len(body) > limit:
        raise _too_large(limit)
    return body


def json_body(request: HttpRequest) -> Any:
    body = read_body(request)
    content_type = request.content_type or ""
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json or application/fhir+json).")
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # [[[[... a few thousand deep exhausts the parser's stack
        raise ApiError(400, "invalid_json", "The body is nested too deeply.") from exc


# --- What the caller named and we do not have (docs/security.md §22) ----------------------------

# One answer for every lookup that finds nothing the token may see: an unknown patient, a patient
# outside the token's reach (``for_actor``), a known patient with a study that is not theirs or not
# there. The answer does not say which of these it was, so a mismatch never tells the caller that
# the patient exists or whose a study is.
NOT_FOUND = ("not_found", "Nothing matches the patient and study you sent.")


def not_found() -> ApiError:
    return ApiError(404, *NOT_FOUND)


def lookup_missed(request: HttpRequest, *, endpoint: str, misses: list[Miss], probing: bool = True) -> None:
    """Note what ``request`` named that matched nothing, for the privacy office, and (``probing``)
    count it against the token's lookup budget (``core.ratelimit``). ``probing=False`` where the
    answer does not tell a miss from a refusal (the cohort: unknown studies are "not permitted"),
    so a miss there teaches the caller nothing and may be frequent in honest use."""
    if not misses:
        return
    service_activity.service_request_miss_note(actor=request.actor, endpoint=endpoint, misses=misses)
    if probing:
        # A patient named many times in one request (a batch of events) is one lookup.
        count = len({m.patient for m in misses if m.patient}) + sum(m.unknown for m in misses if not m.patient)
        ratelimit.lookups_missed(request.actor.service_account_id, count=count)


def too_many(retry_after: int, message: str) -> JsonResponse:
    response = api_error(429, "rate_limited", message, retry_after=retry_after)
    response["Retry-After"] = str(retry_after)
    return response


def _limited(account: ServiceAccount) -> JsonResponse | None:
    """A 429 answer if this token is over its request rate or out of lookups, else None."""
    verdict = ratelimit.request_take(account.pk)
    if not verdict.allowed:
        return too_many(verdict.retry_after, "Too many requests for this token; retry after the given seconds.")
    # Out of lookups, every request about a patient is refused, found or not: answering only the
    # misses with 429 would tell a prober which of its guesses exist.
    verdict = ratelimit.lookups_left(account.pk)
    if not verdict.allowed:
        return too_many(verdict.retry_after, "Too many lookups that found nothing for this token; retry after the given seconds.")
    return None


def api_endpoint(*, scope: str, methods: tuple[str, ...]) -> Callable:
    """Decorate an API view: bearer token with ``scope`` required, listed methods only.

    The view receives ``request.service_account`` and ``request.actor`` (the token's Actor, which
    it hands to services) and returns a JSON response (or raises ``ApiError``). Every request is
    counted for the privacy office (``core.service_activity``) and against the token's rate limits
    (``core.ratelimit``): over them it is answered 429 with ``Retry-After`` before the view runs
    (docs/security.md §22). Session cookies are ignored: APIs are for systems, not browsers, so
    CSRF does not apply and the second-factor gate (for humans) is not involved.
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
                limited = _limited(account)
                service_activity.service_request_count(account=account, limited=limited is not None)
                if limited is not None:
                    return limited
                request.service_account = account
                request.actor = Actor.for_service(account, **request_origin(request))
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return api_error(exc.status, exc.code, exc.message, **exc.extra)

        return login_not_required(csrf_exempt(never_cache(wrapper)))

    return decorator

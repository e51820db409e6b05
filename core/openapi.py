"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, assembled from what each app registers.

Each app describes its own operations next to its views (``register(...)`` at import time), so
the document cannot drift from the URLconf: a test checks that every ``/api/v1/`` route is in it.
The registry is in core so every app can register; ``portal.views.openapi_json`` serves it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core.models import ServiceAccount

_PATHS: dict[str, dict[str, Any]] = {}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "retry_after": {"type": "integer", "description": "With 429: the seconds of Retry-After."},
        },
    }
}


def register(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any] | None = None) -> None:
    """Add one operation (an OpenAPI Operation Object) for ``path`` (e.g. ``/api/v1/audit/events``)."""
    _PATHS.setdefault(path, {})[method.lower()] = operation
    _SCHEMAS.update(schemas or {})


def _json_error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


# core.api answers these on every path, whatever the view: 429 when the token is over its rate or
# out of lookups (docs/security.md §22), 413 when a body is over the limit. Added here, so no
# app's registration can leave them out.
RATE_LIMITED = _json_error(
    "Too many requests for this token, or too many lookups that found nothing; retry after Retry-After seconds.",
    headers={"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}},
)
TOO_LARGE = _json_error("The body is over the size limit (error too_large), or the request asks about too many items.")


def _with_common_responses(path_item: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for method, operation in path_item.items():
        responses = dict(operation.get("responses", {}))
        responses.setdefault("429", RATE_LIMITED)
        if method in ("post", "put", "patch"):
            responses.setdefault("413", TOO_LARGE)
        out[method] = {**operation, "responses": responses}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{settings.SITE_NAME} API",
            "version": "1",
            "description": "APIs for the hospital's systems. Every call needs a service token with the right scope.",
        },
        "servers": [{"url": settings.SITE_URL}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Scopes: " + ", ".join(ServiceAccount.Scope.values),
                }
            },
            "schemas": _SCHEMAS,
        },
        "security": [{"bearer": []}],
        "paths": {path: _with_common_responses(item) for path, item in sorted(_PATHS.items())},
    }

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
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    }
}


def register(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any] | None = None) -> None:
    """Add one operation (an OpenAPI Operation Object) for ``path`` (e.g. ``/api/v1/audit/events``)."""
    _PATHS.setdefault(path, {})[method.lower()] = operation
    _SCHEMAS.update(schemas or {})


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
        "paths": dict(sorted(_PATHS.items())),
    }

"""Strict parsers for environment variables (after healthchecks' ``envbool``).

A typo in a deployment variable must stop the process, not silently fall back to a default.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from exc


def envlist(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def require_protected_service_url(name: str, url: str) -> None:
    """Stop a production process whose Redis/broker URL anyone on the network could use.

    The cache holds sessions and rate-limit counters and the broker carries task ids
    (docs/security.md §3, §18): a URL must name a loopback host, a Unix socket, or carry a
    password. TLS alone (``rediss://`` with no password) still lets any host that reaches the
    port read and write, so it is refused too.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme in {"unix", "redis+socket", "socket"} or parts.scheme.endswith("+unix"):
        return
    try:
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL") from exc
    if host in _LOOPBACK or parts.password:
        return
    raise ImproperlyConfigured(
        f"{name} names {host or 'no host'} without a password: in production a cache or broker that is "
        "not on this machine must require one (redis://:PASSWORD@host:6379/0)"
    )

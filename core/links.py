"""Absolute links for messages read outside the portal (emails): always built from ``SITE_URL``.

Never from the request's host (a forged ``Host`` header, or the internal name a worker sees) nor
from the Sites framework's domain (``example.com`` until someone edits it in the admin).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def site_url(path: str) -> str:
    """``path`` (``/flags/``) on the public address of this portal (``settings.SITE_URL``)."""
    return settings.SITE_URL.rstrip("/") + "/" + path.lstrip("/")


def rebase(url: str) -> str:
    """An absolute URL someone else built (allauth builds them from the request) moved onto
    ``SITE_URL``: same path, query and fragment."""
    bits = urlsplit(url)
    tail = bits.path + (f"?{bits.query}" if bits.query else "") + (f"#{bits.fragment}" if bits.fragment else "")
    return site_url(tail)

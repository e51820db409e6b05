"""Filters for the lists of sessions and sign-ins (accounts.sessions does the work)."""

from __future__ import annotations

from django import template

from accounts import sessions

register = template.Library()


@register.filter
def browser_name(user_agent: str) -> str:
    """``{{ session.user_agent|browser_name }}`` → "Chrome 124 on Windows"."""
    return sessions.browser_name(user_agent or "")


@register.filter
def sign_in_unfinished(session) -> bool:
    """``{% if session|sign_in_unfinished %}``: password given, second factor not."""
    return sessions.sign_in_unfinished(session)

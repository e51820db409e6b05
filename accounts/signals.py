"""Receivers for events that allauth owns (STYLE.md: signals only for library events)."""

from __future__ import annotations

from allauth.account.signals import password_changed, password_set
from django.dispatch import receiver

from accounts import services


@receiver(password_changed)
@receiver(password_set)
def _sign_out_other_sessions(sender, request, user, **kwargs) -> None:
    services.sessions_end_others(actor=request.actor, session_key=request.session.session_key)

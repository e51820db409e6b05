"""allauth's account adapter, adapted: every link in the emails it sends comes from ``SITE_URL``."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from core.links import rebase


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """allauth builds its links (confirmation, password reset, "sign up instead") from the
        request's host; a mail read outside the portal must point at its public address
        (``core.links``), whatever host the request came in on."""
        context = {
            key: rebase(value) if isinstance(value, str) and value.startswith(("http://", "https://")) else value
            for key, value in context.items()
        }
        super().send_mail(template_prefix, email, context)

"""Celery jobs of proxies. The work is in services (the same one ``apply_proxy_ages`` runs)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="proxies.apply_ages")
def apply_ages() -> dict[str, int]:
    """The daily growing-up run (beat: ``proxies-apply-ages``); idempotent (each announcement is
    made once, an ended grant is not active any more), so a repeated run changes nothing."""
    from proxies.services import proxy_ages_apply

    return proxy_ages_apply()

from __future__ import annotations

from django.apps import AppConfig


class ProxiesConfig(AppConfig):
    name = "proxies"
    verbose_name = "Proxies (family and caregivers)"

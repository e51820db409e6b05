from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Access log"

    def ready(self) -> None:
        # The access log's writer behind core.access_log.record, the port services record
        # through (imaging cannot import audit: audit reads imaging's tables).
        from audit.services import record_for_actor
        from core import access_log

        access_log.install(record_for_actor)

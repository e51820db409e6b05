"""Recording an actor's access to a patient's records: the port every service writes through.

``record(actor=..., patient=..., action=...)`` appends one event to the patient's access log, in
the caller's transaction, naming the actor as the patient will read it. The access log itself
(hash-chained, append-only) belongs to the ``audit`` app, which installs its writer here when
Django starts (``audit.apps.AuditConfig.ready``).

Why a port instead of importing ``audit.services``: ``audit`` reads ``imaging``'s tables (the
patient a chain belongs to), so ``imaging`` may not import ``audit`` without a cycle, yet imaging's
own services (opening a study, downloading an image, an import) must write their access event in
the same transaction as the read. They depend on this interface; ``audit`` provides it. Nothing is
looked up by name: a process without the audit app refuses to record rather than skip the record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from core.actor import Actor


# The writer's signature is ``record``'s below (``audit.services.record_for_actor``).
Recorder = Callable[..., Any]


_recorder: Recorder | None = None


def install(recorder: Recorder) -> None:
    """Called once by the audit app at start-up."""
    global _recorder
    _recorder = recorder


def record(
    *,
    actor: Actor,
    patient: Any,
    action: str,
    study: Any = None,
    purpose: str | None = None,
    outcome: str = "success",
    occurred_at: dt.datetime | None = None,
    details: dict[str, Any] | None = None,
    source: str | None = None,
) -> Any:
    """Append one event for ``actor``'s access to ``patient``'s records and return it.

    Raises ``PermissionDenied`` when ``actor`` may not reach ``patient`` (a record is written only
    for an access the ``for_actor`` rule allowed), ``ValidationError`` for an unknown action or
    purpose. ``source`` is how the event reached the log: the portal by default, ``api`` for a
    service account, ``import`` for the importer. Callers: services, inside the transaction of the access they record; never views.
    """
    if _recorder is None:
        raise ImproperlyConfigured("No access-log writer is installed: add 'audit' to INSTALLED_APPS.")
    return _recorder(
        actor=actor, patient=patient, action=action, study=study, purpose=purpose,
        outcome=outcome, occurred_at=occurred_at, details=details, source=source,
    )

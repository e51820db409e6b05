"""Events from other systems: the API's JSON batches and FHIR AuditEvents, and file imports.

Every event names the patient by (issuer, MRN) and optionally the study by Study Instance UID
or accession. Each one is accepted, a duplicate (same sender and ``source_event_id`` as an event
already recorded) or rejected with a reason: an unknown patient is rejected, never dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.models import AccessEvent
from audit.services import append_events, build_event, create_heads, lock_timeout_set
from imaging.models import Patient, Study

logger = logging.getLogger(__name__)

# The API's batch limit: 500 events of ~1 KB stay well under the 2 MB body limit.
MAX_BATCH = 500
# A sender's clock may run a little fast; an event further in the future is a bug.
FUTURE_SKEW = dt.timedelta(minutes=5)
# What a patient can be shown about the actor: long enough for real names, short for the page.
TEXT_LIMITS = {"actor_name": 200, "actor_ref": 200, "organization": 200, "role": 100}
# The choices, listed once: ``TextChoices.values`` builds a new list on every call (4 per event).
# "proxy" only Lightbox itself records (a person acting under a proxy grant, docs/security.md §28):
# a connected system cannot make an event look like the patient's family member or carer.
ACTOR_TYPES = [t for t in AccessEvent.ActorType.values if t != AccessEvent.ActorType.PROXY]
PURPOSES = AccessEvent.Purpose.values
ACTIONS = AccessEvent.Action.values
OUTCOMES = AccessEvent.Outcome.values


@dataclass
class Outcome:
    index: int
    source_event_id: str | None
    status: str  # accepted | duplicate | rejected
    reason: str = ""
    event_id: int | None = None
    # The (issuer, MRN) of an event rejected as UNKNOWN, for the privacy office's miss record;
    # never sent back to the caller.
    missed: tuple[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "source_event_id": self.source_event_id, "status": self.status}
        if self.reason:
            data["reason"] = self.reason
        if self.event_id is not None:
            data["id"] = self.event_id
        return data


@dataclass
class IngestResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def accepted_ids(self) -> list[int]:
        return [o.event_id for o in self.outcomes if o.status == "accepted" and o.event_id is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.count("accepted"),
            "duplicate": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "results": [o.as_dict() for o in self.outcomes],
        }


class Rejected(Exception):
    pass


# An unknown patient and a known patient's unknown study get the same reason, so a rejection does
# not tell the sender that a patient exists (docs/security.md §22).
UNKNOWN = "unknown patient or study (nothing matches this issuer, MRN and study)"


class Unknown(Rejected):
    def __init__(self, patient: tuple[str, str]) -> None:
        super().__init__(UNKNOWN)
        self.patient = patient


def _text(data: dict, key: str, *, required: bool = False, limit: int = 200) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise Rejected(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise Rejected(f"{key} must be a string")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; no real name or id contains one
        raise Rejected(f"{key} contains a NUL character")
    value = value.strip()
    if len(value) > limit:
        raise Rejected(f"{key} is longer than {limit} characters")
    return value


def _choice(value: Any, choices: list[str], key: str) -> str:
    if value not in choices:
        raise Rejected(f"{key} must be one of: {', '.join(choices)}")
    return value


def _when(value: Any) -> dt.datetime:
    if not isinstance(value, str) or not value:
        raise Rejected("occurred_at is required (ISO 8601 with a time zone)")
    try:
        when = parse_datetime(value.strip())
    except ValueError:
        when = None
    if when is None:
        raise Rejected("occurred_at is not an ISO 8601 date-time")
    if timezone.is_naive(when):
        raise Rejected("occurred_at must carry a time zone (e.g. 2026-03-03T10:14:00Z)")
    if when > timezone.now() + FUTURE_SKEW:
        raise Rejected("occurred_at is in the future")
    return when


def normalise(raw: Any, *, default_actor_type: str, default_organization: str) -> dict[str, Any]:
    """Check one event of the JSON batch format and return record_access's arguments (minus
    source), plus ``_patient`` and ``_study`` lookups. Raises ``Rejected`` with the reason."""
    if not isinstance(raw, dict):
        raise Rejected("each event must be a JSON object")
    patient_ref = raw.get("patient")
    if not isinstance(patient_ref, dict):
        raise Rejected("patient must be an object with issuer and mrn")
    issuer = _text(patient_ref, "issuer", required=True, limit=64)
    mrn = _text(patient_ref, "mrn", required=True, limit=64)
    actor = raw.get("actor") or {}
    if not isinstance(actor, dict):
        raise Rejected("actor must be an object")
    source_event_id = _text(raw, "source_event_id", required=True, limit=150)
    return {
        "source_event_id": source_event_id,
        "occurred_at": _when(raw.get("occurred_at")),
        "_patient": (issuer, mrn),
        "_study": (_text(raw, "study_uid", limit=64), _text(raw, "accession", limit=64)),
        "actor_type": _choice(actor.get("type") or default_actor_type, ACTOR_TYPES, "actor.type"),
        "actor_name": _text(actor, "name", limit=TEXT_LIMITS["actor_name"]),
        "actor_ref": _text(actor, "ref", limit=TEXT_LIMITS["actor_ref"]),
        "organization": _text(actor, "organization", limit=TEXT_LIMITS["organization"]) or default_organization,
        "role": _text(actor, "role", limit=TEXT_LIMITS["role"]),
        "purpose": _choice(raw.get("purpose"), PURPOSES, "purpose"),
        "action": _choice(raw.get("action"), ACTIONS, "action"),
        "outcome": _choice(raw.get("outcome") or "success", OUTCOMES, "outcome"),
    }


def _lookups(items: list[dict | Rejected]) -> tuple[dict[tuple[str, str], Patient], dict[tuple, Study]]:
    """The batch's patients by (issuer, MRN) and studies by (patient id, study UID, accession), in
    two queries. A study is looked up by its UID when given, else by accession (lowest id first)."""
    keys = {f["_patient"] for f in items if isinstance(f, dict)}
    if not keys:
        return {}, {}
    # One term per issuer (a batch from one system names one or two), not one per patient: Django
    # compiles a 50-term OR of pairs in about as long as PostgreSQL takes to answer it.
    by_issuer: dict[str, list[str]] = {}
    for issuer, mrn in keys:
        by_issuer.setdefault(issuer, []).append(mrn)
    query = Q()
    for issuer, mrns in by_issuer.items():
        query |= Q(issuer=issuer, mrn__in=sorted(mrns))
    patients = {(p.issuer, p.mrn): p for p in Patient.objects.filter(query)}
    wanted = [(patients[f["_patient"]].pk, *f["_study"]) for f in items
              if isinstance(f, dict) and f["_patient"] in patients and any(f["_study"])]
    studies: dict[tuple, Study] = {}
    if wanted:
        uids = {uid for _pk, uid, _acc in wanted if uid}
        accessions = {acc for _pk, uid, acc in wanted if acc and not uid}
        found = Study.objects.filter(patient_id__in={w[0] for w in wanted}).filter(
            Q(study_uid__in=uids) | Q(accession__in=accessions)
        ).order_by("-pk")  # lowest id last, so it wins below
        for study in found:
            studies[(study.patient_id, study.study_uid, "")] = study
            studies[(study.patient_id, "", study.accession)] = study
    return patients, studies


def _resolve(fields: dict[str, Any], patients: dict[tuple[str, str], Patient], studies: dict[tuple, Study]
             ) -> tuple[Patient, Study | None]:
    key = fields.pop("_patient")
    patient = patients.get(key)
    if patient is None:
        raise Unknown(key)
    study_uid, accession = fields.pop("_study")
    if not (study_uid or accession):
        return patient, None
    study = studies.get((patient.pk, study_uid, accession if not study_uid else ""))
    if study is None:
        raise Unknown(key)
    return patient, study


class Busy(Exception):
    """A group of the batch could not get its chain heads in time (another writer held one past
    ``audit.services.LOCK_TIMEOUT``), kept colliding with concurrent batches, or PostgreSQL
    cancelled it (deadlock, serialization). The groups before it are recorded, the rest are not;
    sending the same batch again is safe (what was recorded comes back as a duplicate). The API
    answers 503 with Retry-After."""


# lock_not_available, deadlock_detected, serialization_failure
_BUSY_STATES = {"55P03", "40P01", "40001"}


def _append(events: list[AccessEvent]) -> list[AccessEvent | None]:
    try:
        return append_events(events)
    except IntegrityError:
        raise Busy("the batch kept colliding with concurrent batches") from None
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) in _BUSY_STATES:
            raise Busy(str(exc)) from exc
        raise


# PostgreSQL advisory lock keys of the ingest slots: (this namespace, slot number). The number is
# "LBIN" in ASCII, so that another application's locks on the same database cannot collide.
_SLOT_NAMESPACE = 0x4C42494E
# The slot this thread's connection holds, on the connection object (the lock is the connection's).
_HELD = "lightbox_ingest_slot"


@contextlib.contextmanager
def ingest_slot() -> Iterator[None]:
    """One of ``settings.AUDIT_INGEST_CONCURRENCY`` places for a batch being ingested, held while
    the block runs; a batch that finds them all taken waits its turn, up to
    ``settings.AUDIT_INGEST_WAIT_SECONDS``, then ``Busy`` (the API's 503 with Retry-After: nothing
    of the batch was recorded).

    Why: a batch is CPU work from start to end (checking, hashing, writing), and with as many
    batches at once as there are cores a patient's page waits for a core at every step. Four
    senders at once on this 2-core machine made a page's chained write 5.0x slower at p95; one
    batch at a time, 2.1-2.5x (benchmarks/access_log_ingest.py). The default, one fewer than the
    cores (at least one), leaves a core for the pages; waiting batches use no CPU, and together
    they still record as fast as one batch can (a third of PostgreSQL's own insert rate here).
    The API also works its batch at a lower CPU priority (``AUDIT_INGEST_NICE``, audit/api.py),
    so that the pages get most of any core they share with it.

    A session-level advisory lock on PostgreSQL, released when the block ends (or when the
    connection closes, should the process die); those waiting for a slot get it in arrival order.
    Elsewhere (SQLite, the single-machine default) nothing is taken: SQLite lets one writer in
    at a time anyway."""
    if connection.vendor != "postgresql" or getattr(connection, _HELD, None) is not None:
        yield  # no slots here, or this connection holds one already (the API's, then the service's)
        return
    places = settings.AUDIT_INGEST_CONCURRENCY
    slot = _free_slot(places)
    if slot is None:
        slot = random.randrange(places)  # noqa: S311 - spreads the waiting, not a secret
        nested = connection.in_atomic_block  # a caller's transaction goes on after the wait
        try:
            with transaction.atomic():
                previous = lock_timeout_set(f"{settings.AUDIT_INGEST_WAIT_SECONDS}s")
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_SLOT_NAMESPACE, slot])
                if nested and previous is not None:
                    lock_timeout_set(previous)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
                raise Busy("other batches kept every ingest slot") from exc
            raise
    setattr(connection, _HELD, slot)
    try:
        yield
    finally:
        setattr(connection, _HELD, None)
        _release_slot(slot)


def _free_slot(places: int) -> int | None:
    with connection.cursor() as cursor:
        for slot in range(places):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SLOT_NAMESPACE, slot])
            if cursor.fetchone()[0]:
                return slot
    return None


def _release_slot(slot: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_SLOT_NAMESPACE, slot])
    except DatabaseError:
        # The lock belongs to the connection: closing it lets the slot go. Inside a caller's
        # failed transaction (no caller of events_ingest has one) it cannot be closed, and the
        # slot is held until the connection ends.
        logger.error("could not release ingest slot %s", slot)
        if not connection.in_atomic_block:
            connection.close()


def events_ingest(*, sender: str, source: str, events: list[Any], default_actor_type: str,
                  default_organization: str, normalised: list[dict | Rejected] | None = None) -> IngestResult:
    """Record a batch of events from another system; one outcome per event, in order.

    Callers: the events API (``source="api"``, ``sender`` = the service account's name) and
    ``import_access_events`` (``source="import"``). Each accepted event is recorded as
    ``record_access`` would, with ``details.reported_by = sender``, but the batch goes in
    in short transactions of about 100 events (``audit.services.append_events``: each locks only
    its patients' heads, in one order, for milliseconds), so two batches never deadlock, and a
    portal write that finds a head held queues its event instead of waiting (``record_access``).
    Idempotency is per sender: the stored ``source_event_id`` is ``"<sender>/<id>"``, so two
    systems that number events alike never collide, and a re-sent event comes back as
    ``duplicate``. ``normalised`` lets the FHIR mapping hand over events already in the batch
    format (or the reason each was rejected). Raises ``Busy`` when a lock could not be had in
    time (the groups before it are recorded); the caller may send the same batch again. At most
    ``settings.AUDIT_INGEST_CONCURRENCY`` batches are ingested at once (``ingest_slot``).
    """
    with ingest_slot():
        return _ingest(sender=sender, source=source, events=events, default_actor_type=default_actor_type,
                       default_organization=default_organization, normalised=normalised)


def _ingest(*, sender: str, source: str, events: list[Any], default_actor_type: str,
            default_organization: str, normalised: list[dict | Rejected] | None) -> IngestResult:
    items: list[dict | Rejected] = []
    for raw, pre in zip(events, normalised if normalised is not None else [None] * len(events), strict=True):
        if pre is None:
            try:
                pre = normalise(raw, default_actor_type=default_actor_type, default_organization=default_organization)
            except Rejected as exc:
                pre = exc
        items.append(pre)
    patients, studies = _lookups(items)
    outcomes: list[Outcome | None] = []
    built: list[tuple[int, AccessEvent]] = []
    for index, (raw, pre) in enumerate(zip(events, items, strict=True)):
        sid = raw.get("source_event_id") if isinstance(raw, dict) else None
        try:
            if isinstance(pre, Rejected):
                raise pre
            fields = dict(pre)
            sid = fields["source_event_id"]
            patient, study = _resolve(fields, patients, studies)
            fields["source_event_id"] = f"{sender}/{sid}"
            built.append((index, build_event(patient=patient, study=study, source=source,
                                             details={"reported_by": sender}, **fields)))
            outcomes.append(None)
        except Rejected as exc:
            missed = exc.patient if isinstance(exc, Unknown) else None
            outcomes.append(Outcome(index, sid if isinstance(sid, str) else None, "rejected", str(exc), missed=missed))
        except ValidationError as exc:
            outcomes.append(Outcome(index, sid, "rejected", "; ".join(exc.messages)))
    with transaction.atomic():  # committed at once (unless the caller has a transaction)
        create_heads(event.patient_id for _index, event in built)
    saved = _append([event for _index, event in built])
    for (index, _event), event in zip(built, saved, strict=True):
        sid = items[index]["source_event_id"]
        if event is None:
            outcomes[index] = Outcome(index, sid, "duplicate", "already recorded")
        else:
            outcomes[index] = Outcome(index, sid, "accepted", event_id=event.pk)
    result = IngestResult([o for o in outcomes if o is not None])
    if result.accepted_ids:
        from audit.notifications import notify_on_commit

        # After the batch's commit (at once), or the caller's if it runs in one.
        notify_on_commit(result.accepted_ids)
    return result

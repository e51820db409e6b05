"""Writes (and the integrity check) for the access log.

Every access to a patient's data is recorded with ``record_access`` inside the transaction of
the action itself (docs/security.md §13), so an action and its audit row commit or roll back together.
Events form one hash chain per patient: each row carries its position ``seq``, the previous row's
hash and the SHA-256 of its own contents, so ``chain_verify`` can detect an edited, deleted,
reordered or inserted row even if someone gets past the append-only triggers.

Nothing here logs: events name patients and accessors, and logs are not the place for either
(docs/security.md §14).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.utils import timezone

from audit.models import GENESIS_HASH, AccessEvent, ChainHead
from core.actor import Actor, Kind
from imaging.models import Patient, Study

# What the hash covers: every field of the event except its row id (assigned by the database
# after hashing) and the hash itself. Changing this list breaks every existing chain.
HASHED_FIELDS = (
    "occurred_at",
    "recorded_at",
    "patient",
    "study",
    "actor_type",
    "actor_name",
    "actor_ref",
    "organization",
    "role",
    "purpose",
    "action",
    "outcome",
    "source",
    "source_event_id",
    "ip",
    "user_agent",
    "details",
    "seq",
    "prev_hash",
)

# The User-Agent header is client-controlled; an over-long one must not make the audit write
# (and with it the action) fail.
USER_AGENT_MAX = 300


# --- Hashing ------------------------------------------------------------------------------


_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _utc(value: dt.datetime) -> str:
    """``value`` in UTC as hashed: ``strftime(_UTC_FORMAT)``, taken from ``isoformat`` where the
    two agree (years from 1000: strftime does not pad a shorter year), which is about four times
    faster; 1,000 events of an ingest batch format two times each."""
    utc = value.astimezone(dt.UTC)
    if utc.year >= 1000:
        return utc.isoformat(timespec="microseconds")[:26] + "Z"
    return utc.strftime(_UTC_FORMAT)


def _canonical(value: Any) -> Any:
    # PostgreSQL's jsonb stores numbers as exact decimals, so 1e16 written as a float may come
    # back as the integer 10000000000000000; hashing integral floats as ints keeps the hash of
    # a row identical before and after the round trip.
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def event_payload(event: AccessEvent) -> dict[str, Any]:
    """The canonical content of an event, as hashed. Ids are strings, times ISO-8601 UTC."""
    return {
        "occurred_at": _utc(event.occurred_at),
        "recorded_at": _utc(event.recorded_at),
        "patient": str(event.patient_id),
        "study": None if event.study_id is None else str(event.study_id),
        "actor_type": event.actor_type,
        "actor_name": event.actor_name,
        "actor_ref": event.actor_ref,
        "organization": event.organization,
        "role": event.role,
        "purpose": event.purpose,
        "action": event.action,
        "outcome": event.outcome,
        "source": event.source,
        "source_event_id": event.source_event_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "details": _canonical(event.details),
        "seq": event.seq,
        "prev_hash": event.prev_hash,
    }


# json.dumps with these options builds a new encoder per call; one instance does the same work.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_hash(event: AccessEvent) -> str:
    """SHA-256 (hex) of the event's canonical JSON: sorted keys, no whitespace, UTF-8."""
    text = _CANONICAL_JSON.encode(event_payload(event))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- Recording ----------------------------------------------------------------------------


def _normalise_details(details: Any) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise ValidationError({"details": "Details must be a JSON object."})
    if all(type(k) is str and (v is None or type(v) in (str, int, bool)) for k, v in details.items()):
        return dict(details)  # already plain JSON (every ingested event: {"reported_by": ...})
    try:
        # Store exactly what a later read returns (plain JSON types), so the hash verifies.
        return json.loads(json.dumps(details, cls=DjangoJSONEncoder, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError({"details": f"Details must be JSON-serialisable: {exc}"}) from exc


def _locked_chain_head(patient: Patient) -> ChainHead:
    """The patient's chain head, locked until the end of the transaction; created if missing."""
    heads = ChainHead.objects.select_for_update()
    head = heads.filter(patient=patient).first()
    if head is None:
        try:
            # Own savepoint: losing the race to create the head must not poison the caller's
            # transaction. The loser's INSERT waits for the winner to commit, then fails here.
            with transaction.atomic():
                ChainHead.objects.create(patient=patient)
        except IntegrityError:
            pass
        head = heads.get(patient=patient)
    return head


_PATIENT = AccessEvent._meta.get_field("patient")
_STUDY = AccessEvent._meta.get_field("study")


@functools.cache
def _attnames() -> tuple[str, ...]:
    return tuple(f.attname for f in AccessEvent._meta.concrete_fields)


# Not checked by build_event: set later (seq, hashes) or passed as loaded rows (patient, study).
_UNCHECKED = ("seq", "prev_hash", "hash", "patient", "study")
_PLAIN_VALIDATORS = (MaxLengthValidator, ProhibitNullCharactersValidator)


@functools.cache
def _field_checks() -> tuple[tuple[str, str, int | None, frozenset, bool, bool], ...]:
    checks = []
    for f in AccessEvent._meta.concrete_fields:
        if f.name in _UNCHECKED or f.primary_key:
            continue
        if isinstance(f, models.CharField) and all(isinstance(v, _PLAIN_VALIDATORS) for v in f.validators):
            kind = "text"
        elif isinstance(f, models.DateTimeField) and not f.validators:
            kind = "datetime"
        elif isinstance(f, models.JSONField):
            kind = "json"  # build_event stores details already round-tripped through JSON
        else:
            kind = "other"
        checks.append((f.attname, kind, f.max_length, frozenset(str(c[0]) for c in f.flatchoices), f.blank, f.null))
    return tuple(checks)


def _plainly_valid(event: AccessEvent) -> bool:
    """True when ``full_clean`` would find nothing wrong, decided without it for plain text,
    times and JSON; False sends the event through ``full_clean``. Written by hand because
    ``full_clean`` costs about 0.2 ms an event, a third of a batch's time in the ingest API."""
    for attname, kind, max_length, choices, blank, null in _field_checks():
        value = getattr(event, attname)
        if value is None:
            if null:
                continue
            return False
        if kind == "text":
            if not isinstance(value, str) or "\x00" in value or (max_length is not None and len(value) > max_length):
                return False
            if value == "":
                if not blank:
                    return False
            elif choices and value not in choices:
                return False
        elif kind == "datetime":
            if not isinstance(value, dt.datetime):
                return False
        elif kind != "json":
            return False
    return True


def build_event(
    *,
    patient: Patient,
    action: str,
    purpose: str,
    actor_type: str,
    actor_name: str = "",
    actor_ref: str = "",
    organization: str = "",
    role: str = "",
    study: Study | None = None,
    outcome: str = "success",
    source: str = "portal",
    source_event_id: str | None = None,
    occurred_at: dt.datetime | None = None,
    ip: str | None = None,
    user_agent: str = "",
    details: dict[str, Any] | None = None,
) -> AccessEvent:
    """An unsaved, checked event (no seq or hashes yet): the checks of ``record_access``, shared
    with the batch path (``append_events``). Raises ``ValidationError`` as ``record_access`` does."""
    if study is not None and study.patient_id != patient.pk:
        raise ValidationError({"study": "The study belongs to another patient."})
    now = timezone.now()
    values = {
        "id": None,
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "patient_id": patient.pk,
        "study_id": None if study is None else study.pk,
        "actor_type": actor_type,
        "actor_name": actor_name,
        "actor_ref": actor_ref,
        "organization": organization,
        "role": role,
        "purpose": purpose,
        "action": action,
        "outcome": outcome,
        "source": source,
        "source_event_id": source_event_id or None,
        "ip": ip or None,
        "user_agent": (user_agent or "")[:USER_AGENT_MAX],
        "details": _normalise_details(details),
        "seq": 0,
        "prev_hash": "",
        "hash": "",
    }
    # Positional values and the loaded rows put in the relations' caches: Django's keyword path
    # runs the related descriptors and router checks, a third of building an event (about 35 us
    # of 100; 500 per batch on the ingest path).
    event = AccessEvent(*[values[attname] for attname in _attnames()])
    _PATIENT.set_cached_value(event, patient)
    _STUDY.set_cached_value(event, study)
    # seq, prev_hash and hash come from the chain head later. Uniqueness is left to the
    # database: a pre-check query would be one more round trip and still racy.
    # patient and study arrive as loaded rows (the study checked against the patient above), so
    # their existence queries are skipped: two round trips per event on the ingest path.
    if not _plainly_valid(event):  # full_clean for the rest, and for its messages
        event.full_clean(exclude=list(_UNCHECKED), validate_unique=False, validate_constraints=False)
    if timezone.is_naive(event.occurred_at):
        raise ValidationError({"occurred_at": "The time of access must carry a time zone."})
    return event


def _link(event: AccessEvent, head: ChainHead, now: dt.datetime, *, occurred_given: bool = True) -> None:
    """Make ``event`` the next link of ``head``'s chain (seq, prev_hash, hash) and advance the
    head in memory. The one place an event is chained: ``record_access`` and ``append_events``.
    ``now`` is taken under the head's lock, so recorded_at never goes backwards along a chain;
    an event without its own time of access gets it too."""
    event.recorded_at = now
    if not occurred_given:
        event.occurred_at = now
    event.seq = head.seq + 1
    event.prev_hash = head.last_hash
    event.hash = event_hash(event)
    head.seq = event.seq
    head.last_hash = event.hash


def record_access(**fields: Any) -> AccessEvent:
    """Append one event to ``patient``'s access log and return it. Takes ``build_event``'s
    arguments (``patient``, ``action``, ``purpose``, ``actor_type`` required).

    Callers: ``record_for_actor`` (every service that reads or changes patient data, through
    ``core.access_log.record``), inside their own transaction, so the action and its record
    commit together. Events other systems report go in batches through ``append_events``.

    Runs in a savepoint and locks the patient's chain head, so concurrent writers for one
    patient append one after the other and never fork the chain. On PostgreSQL a portal event
    never waits for the head: when another writer holds it, the event is queued
    (``PendingAccessEvent``, in the caller's transaction) and the next holder chains it; the
    event is then returned unsaved (``pk`` None, ``seq`` 0). Raises ``ValidationError`` for
    an unknown actor type, purpose, action, outcome or source, a study of another patient, a
    naive ``occurred_at`` or non-JSON details; ``IntegrityError`` when (``source``,
    ``source_event_id``) was already recorded (the caller's transaction stays usable).
    """
    event = build_event(**fields)
    occurred_given = fields.get("occurred_at") is not None
    if connection.vendor == "postgresql":
        # A savepoint only where something can collide (a source_event_id): inside a caller's
        # transaction a portal event then costs two round trips, not six (issue 18, study page).
        # An event with a source_event_id waits for the head: its uniqueness is checked in the
        # log itself, which a queued event is not yet in.
        with transaction.atomic(savepoint=event.source_event_id is not None):
            _append_one(event, occurred_given=occurred_given, wait=event.source_event_id is not None)
        return event
    with transaction.atomic():
        head = _locked_chain_head(event.patient)
        _link(event, head, timezone.now(), occurred_given=occurred_given)
        event.save(force_insert=True)
        head.save(update_fields=["seq", "last_hash"])
        _count_month(event)
    return event


# Takes the head's row lock and the next seq in one statement (what SELECT ... FOR UPDATE and a
# later UPDATE did in two), and says whether queued events wait for this head. The first waits
# for a head another writer holds; the second takes it only if free (SKIP LOCKED: no row back).
_PENDING_EXISTS = "EXISTS (SELECT 1 FROM audit_pendingaccessevent AS p WHERE p.patient_id = h.patient_id)"
_ADVANCE_SQL = f"""
    UPDATE audit_chainhead AS h SET seq = h.seq + 1 WHERE h.patient_id = %s
    RETURNING h.seq, h.last_hash, {_PENDING_EXISTS}
"""  # noqa: S608 - constant SQL
# A head that exists but is held comes back as a row of NULLs (the writer queues at once, without
# the two round trips of trying to create it and asking again: a tenth of a page's writes beside
# an ingest batch on the same patients); a missing head as no row.
_ADVANCE_IF_FREE_SQL = f"""
    WITH free AS (SELECT patient_id FROM audit_chainhead WHERE patient_id = %s FOR UPDATE SKIP LOCKED),
    advanced AS (
        UPDATE audit_chainhead AS h SET seq = h.seq + 1 FROM free WHERE h.patient_id = free.patient_id
        RETURNING h.seq, h.last_hash, {_PENDING_EXISTS} AS pending
    )
    SELECT seq, last_hash, pending FROM advanced
    UNION ALL
    SELECT NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM advanced)
        AND EXISTS (SELECT 1 FROM audit_chainhead WHERE patient_id = %s)
"""  # noqa: S608 - constant SQL


@functools.cache
def _record_sql() -> str:
    """The event, the head's hash and the monthly count in one statement (data-modifying CTEs
    all run, read or not)."""
    attrs = _COPY_ATTRS[1:]  # the id comes from the table
    columns = ", ".join(connection.ops.quote_name(_column(a)) for a in attrs)
    values = ", ".join("%s::jsonb" if a == "details" else "%s" for a in attrs)
    return f"""
        WITH event AS (
            INSERT INTO audit_accessevent ({columns}) VALUES ({values}) RETURNING id
        ), head AS (
            UPDATE audit_chainhead SET last_hash = %s WHERE patient_id = %s
        ), month AS (
            {_COUNT_SQL}
        )
        SELECT id FROM event
    """  # noqa: S608 - column names from the model; values are parameters


def _append_one(event: AccessEvent, *, occurred_given: bool, wait: bool) -> None:
    """``record_access`` on PostgreSQL: two statements. The first locks the patient's chain head
    and advances its seq (creating the head first if missing: ON CONFLICT DO NOTHING waits for a
    racing creator instead of failing); the second inserts the chained event, sets the head's
    hash and counts the month. Same rows as the ORM path, four round trips fewer.

    Unless ``wait``, a head another writer holds is not waited for: the event is queued
    (``_queue``) and the call returns at once. Events queued earlier for this head are chained
    first, before this one (``_chain_locked``)."""
    advance, params = (_ADVANCE_SQL, [event.patient_id]) if wait else (_ADVANCE_IF_FREE_SQL, [event.patient_id] * 2)
    with connection.cursor() as cursor:
        cursor.execute(advance, params)
        row = cursor.fetchone()
        if row is None:  # no head yet
            create_heads([event.patient_id])  # does not wait on a head that exists and is held
            cursor.execute(advance, params)
            row = cursor.fetchone()
        if row is None or row[0] is None:  # held by another writer
            _queue(cursor, event, occurred_given=occurred_given)
            return
        seq, last_hash, pending = row
        head = ChainHead(patient_id=event.patient_id, seq=seq - 1, last_hash=last_hash)
        if pending:  # events queued while the head was busy go first
            _chain_locked({head.patient_id: head}, [event], timezone.now(), occurred_given=occurred_given)
            return
        _link(event, head, timezone.now(), occurred_given=occurred_given)
        values = [getattr(event, a) for a in _COPY_ATTRS[1:]]
        values[_DETAILS - 1] = json.dumps(event.details)
        cursor.execute(_record_sql(), [
            *values, event.hash, event.patient_id,
            event.patient_id, month_of(event.occurred_at), event.actor_type, event.organization, event.purpose,
        ])
        event.pk = cursor.fetchone()[0]
    event._state.adding = False
    event._state.db = connection.alias


def _queue(cursor: Any, event: AccessEvent, *, occurred_given: bool) -> None:
    """Write ``event`` to the queue of events waiting for its head (``PendingAccessEvent``), in
    the caller's transaction. Its time of access is now, not when it is chained."""
    if not occurred_given:
        event.occurred_at = timezone.now()
    fields = {a: getattr(event, a) for a in _QUEUED_ATTRS}
    fields["occurred_at"] = _utc(event.occurred_at)
    cursor.execute(
        "INSERT INTO audit_pendingaccessevent (patient_id, created_at, fields) VALUES (%s, %s, %s::jsonb)",
        [event.patient_id, timezone.now(), json.dumps(fields)],
    )


def _take_pending(patient_ids: list[int]) -> list[AccessEvent]:
    """Delete and return the queued events of these patients, in the order they were queued.
    Callers hold the patients' heads (so no other writer is chaining them); the deletion
    commits with their chaining, or neither does."""
    if connection.vendor != "postgresql":
        return []  # SQLite writers never queue (one writer at a time)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM audit_pendingaccessevent WHERE patient_id = ANY(%s) RETURNING id, fields", [patient_ids]
        )
        rows = sorted(cursor.fetchall())
    events = []
    for _pk, fields in rows:
        values = json.loads(fields) if isinstance(fields, str) else fields
        values["occurred_at"] = dt.datetime.fromisoformat(values["occurred_at"])
        values.update(id=None, recorded_at=None, seq=0, prev_hash="", hash="")
        events.append(AccessEvent(*[values[a] for a in _attnames()]))
    return events


def _chain_locked(heads: dict[int, ChainHead], events: list[AccessEvent], now: dt.datetime, *,
                  occurred_given: bool = True, earlier: list[AccessEvent] | None = None,
                  ids: list[int] | None = None) -> None:
    """Chain the events queued for ``heads``' patients (``earlier``, taken here unless given), then
    ``events`` in their order (a patient's events keep it), insert them all (``ids``: as many from
    the table's sequence, or None to take them) and move the heads and the monthly counts. The
    caller holds the heads; ``now`` is taken under them."""
    if earlier is None:
        earlier = _take_pending(sorted(heads))
    for event in earlier:
        _link(event, heads[event.patient_id], now)
    for event in events:
        _link(event, heads[event.patient_id], now, occurred_given=occurred_given)
    fresh = earlier + events
    if fresh:
        _insert(fresh, ids)
        _advance_heads_and_count([heads[pid] for pid in sorted({e.patient_id for e in fresh})], fresh)


def chain_pending(*, limit: int = 1000) -> int:
    """Chain the events queued for heads that were busy when they were written (``_queue``), for
    up to ``limit`` patients; returns how many were chained. Caller: the ``audit.chain_pending``
    beat task (every ``AUDIT_CHAIN_PENDING_SECONDS``) and ``verify_audit``, for the queued events no
    later writer of their patient picked up. Each patient in a short transaction of its own that
    waits for the head like any writer (bounded by ``LOCK_TIMEOUT``)."""
    from audit.models import PendingAccessEvent

    queued = PendingAccessEvent.objects.order_by("patient_id").values_list("patient_id", flat=True).distinct()
    patient_ids = list(queued[:limit])
    chained = 0
    for patient_id in patient_ids:
        with transaction.atomic():
            lock_timeout_set(LOCK_TIMEOUT)
            create_heads([patient_id])
            heads = _lock_heads([patient_id], nowait=False)
            before = heads[patient_id].seq
            _chain_locked(heads, [], timezone.now())
            chained += heads[patient_id].seq - before
    return chained


def create_heads(patient_ids: Iterable[int]) -> None:
    """Create the chain heads these patients lack (one INSERT ... ON CONFLICT DO NOTHING, in
    patient id order, so that writers waiting on each other's new heads wait in one order).
    Callers: ``events_ingest`` in a short transaction of its own before the batch (so the new
    heads are not held while it waits for others), and ``append_events``."""
    ChainHead.objects.bulk_create([ChainHead(patient_id=pid) for pid in sorted(set(patient_ids))], ignore_conflicts=True)


# How long a batch keeps trying to take a group's heads all at once (NOWAIT, with short random
# pauses) before it queues for them like any writer: one allowance for the whole batch.
HEADS_PATIENCE = 2.0
# Events chained and committed per transaction by ``append_events``. A group holds its heads from
# its lock to its commit (a portal page that needs one of them queues its event meanwhile), so
# concurrent batches on the same patients wait for one group, not for a whole batch of 500
# (150-250 ms in issue 18's benchmark; with groups of 500, four senders on the same patients took
# about half the events per second); a commit per 100 events stays a small part of a batch's time.
GROUP_EVENTS = 100
# How long a group waits for one lock once it queues. Groups hold their heads for milliseconds,
# so a longer wait means something else holds a head; the sender retries rather than tie up a worker.
LOCK_TIMEOUT = "3s"
# A concurrent batch can record one of our source_event_ids for another patient between our
# look-up and our insert (the head locks do not cover it): a group is tried again, a few times.
GROUP_ATTEMPTS = 3


_LOCK_SQL = "SELECT patient_id, seq, last_hash FROM audit_chainhead WHERE patient_id = ANY(%s) ORDER BY patient_id FOR UPDATE"
_LOCK_NOWAIT_SQL = _LOCK_SQL + " NOWAIT"


def _lock_heads(patient_ids: list[int], *, nowait: bool) -> dict[int, ChainHead]:
    """Lock these heads, in patient id order (so no two groups can deadlock); with ``nowait``,
    all at once or none (PostgreSQL refuses at once with lock_not_available: ``_commit_group``
    then rolls the group back and tries again)."""
    if connection.vendor != "postgresql":
        # SQLite (the embedded default) has no row locks: the group's transaction began with
        # the database's write lock (transaction_mode IMMEDIATE, portal/settings.py).
        rows = ChainHead.objects.filter(patient_id__in=patient_ids).values_list("patient_id", "seq", "last_hash")
        return {pid: ChainHead(patient_id=pid, seq=seq, last_hash=last) for pid, seq, last in rows}
    # Raw SQL: the ORM's select_for_update costs about as much to build as the lock takes.
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_NOWAIT_SQL if nowait else _LOCK_SQL, [list(patient_ids)])
        return {pid: ChainHead(patient_id=pid, seq=seq, last_hash=last) for pid, seq, last in cursor.fetchall()}


# One probe of the (source, source_event_id) unique index per id: a LATERAL subquery with LIMIT
# cannot be flattened into a join, so the plan is a nested loop over the ids whatever the
# table's statistics say (see recorded_source_ids).
_RECORDED_SQL = """
    SELECT k.source, k.id FROM unnest(%s::varchar[], %s::varchar[]) AS k(source, id)
    CROSS JOIN LATERAL (
        SELECT 1 FROM audit_accessevent AS e
        WHERE e.source = k.source AND e.source_event_id = k.id AND e.source_event_id IS NOT NULL
        LIMIT 1
    ) AS hit
"""
# The same look-up and ``n`` ids from the table's sequence, in one round trip (under a group's locks).
_RECORDED_AND_IDS_SQL = f"""
    SELECT ARRAY(SELECT k.source || '/' || k.id FROM ({_RECORDED_SQL}) AS k),
           ARRAY(SELECT nextval(pg_get_serial_sequence('audit_accessevent', 'id')) FROM generate_series(1, %s))
"""  # noqa: S608 - constant SQL; values are parameters


def recorded_source_ids(source: str, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are already recorded with ``source`` (the idempotency look-up of
    ``append_events``). Reads ids only, no patient data.

    On PostgreSQL, one statement whose plan does not depend on statistics: unnest the ids and
    probe the unique index once per id (``JOIN LATERAL ... LIMIT 1``). The plain
    ``source = %s AND source_event_id IN (...)`` was planned from statistics taken before a burst
    of inserts as a scan of every row of the source: 400-650 ms per batch until ANALYZE ran
    (tests/audit/test_ingest_lookup_plan.py).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    if connection.vendor != "postgresql":
        found = AccessEvent.objects.filter(source=source, source_event_id__in=wanted)
        return set(found.values_list("source_event_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_RECORDED_SQL, [[source] * len(wanted), wanted])
        return {row[1] for row in cursor.fetchall()}


def _recorded(events: Iterable[AccessEvent]) -> set[tuple[str, str]]:
    by_source: dict[str, list[str]] = {}
    for e in events:
        by_source.setdefault(e.source, []).append(e.source_event_id)
    return {(source, sid) for source, ids in by_source.items() for sid in recorded_source_ids(source, ids)}


def append_events(events: list[AccessEvent]) -> list[AccessEvent | None]:
    """Append a batch of ``build_event`` events, all with a ``source_event_id``; returns each
    event saved, or None where (source, source_event_id) was already recorded (by an earlier
    request, a concurrent one, or earlier in this batch). Caller: ``audit.ingest.events_ingest``,
    outside any transaction that holds chain heads.

    Chain heads are held for milliseconds, never for the batch: the events already recorded are
    looked up first, without locks; the rest, ordered by patient (each patient's events keep the
    batch's order), go in groups of ``GROUP_EVENTS``, each in a short transaction of its own that
    locks only its patients' heads (in patient id order, so no two writers deadlock), looks up
    again under the locks (a batch racing us with the same events has committed by then), chains,
    inserts, advances the heads and the monthly counts, and commits at once. A handful of
    statements per group, none per event.

    So a batch that fails part-way (``OperationalError`` for a lock not had in time,
    ``IntegrityError`` when a group kept colliding with concurrent batches) leaves the groups
    before it recorded; the same batch sent again finds them recorded (None). Inside a caller's
    transaction the groups are savepoints and the heads stay locked until that transaction ends.
    """
    out: list[AccessEvent | None] = [None] * len(events)
    recorded = _recorded(events)
    todo: list[tuple[int, AccessEvent]] = []
    for index, event in enumerate(events):
        key = (event.source, event.source_event_id)
        if key not in recorded:
            recorded.add(key)  # a repeat later in the batch is a duplicate
            todo.append((index, event))
    todo.sort(key=lambda item: item[1].patient_id)  # stable: a patient's events keep batch order
    give_up = time.monotonic() + HEADS_PATIENCE
    for start in range(0, len(todo), GROUP_EVENTS):
        group = todo[start : start + GROUP_EVENTS]
        for (index, _event), saved in zip(group, _commit_group([e for _i, e in group], give_up), strict=True):
            out[index] = saved
    return out


def _commit_group(events: list[AccessEvent], give_up: float) -> list[AccessEvent | None]:
    """Chain and insert one group in a transaction of its own (a savepoint inside a caller's).

    A group that queued for a head would hold the heads before it while it waits, and portal
    writes for those patients would queue behind it. So on PostgreSQL it first takes its heads
    all at once or none (FOR UPDATE NOWAIT as the transaction's first statement: a refusal
    rolls back a transaction that has done nothing yet) and tries again after a short random
    pause until ``give_up`` (``time.monotonic()``); a page then waits at most for the one group
    that is writing. After that it queues like any writer, bounded by ``LOCK_TIMEOUT``, so a
    batch is never starved. Tried again on an IntegrityError (a concurrent batch recorded one of
    these ids for another patient meanwhile: the look-up under the locks then finds it). No
    library offers this; the loop is short."""
    nested = connection.in_atomic_block
    postgresql = connection.vendor == "postgresql"
    attempt = 0
    while True:
        nowait = postgresql and time.monotonic() < give_up
        try:
            with transaction.atomic():
                previous = None if nowait else lock_timeout_set(LOCK_TIMEOUT)
                saved = _append_group(events, nowait=nowait)
                if nested and previous is not None:
                    lock_timeout_set(previous)
                return saved
        except OperationalError as exc:
            if not (nowait and getattr(exc.__cause__, "sqlstate", None) == "55P03"):  # lock_not_available
                raise
            time.sleep(random.uniform(0.005, 0.03))  # noqa: S311 - spreads retries, not a secret
        except IntegrityError:
            attempt += 1
            if attempt == GROUP_ATTEMPTS:
                raise


def lock_timeout_set(value: str) -> str | None:
    """Like SET LOCAL lock_timeout (until the transaction ends or this savepoint rolls back);
    returns the setting it replaced. PostgreSQL only."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)", [value])
        return cursor.fetchone()[0]


def _append_group(events: list[AccessEvent], *, nowait: bool) -> list[AccessEvent | None]:
    patient_ids = sorted({e.patient_id for e in events})
    heads = _lock_heads(patient_ids, nowait=nowait)
    if len(heads) < len(patient_ids):
        create_heads(pid for pid in patient_ids if pid not in heads)
        heads = _lock_heads(patient_ids, nowait=nowait)
    earlier = _take_pending(patient_ids)  # portal events queued while these heads were busy
    if connection.vendor == "postgresql":
        # Looked up again under the locks (a batch racing us with the same events has committed),
        # with as many ids as the group could need in the same round trip.
        with connection.cursor() as cursor:
            cursor.execute(_RECORDED_AND_IDS_SQL, [[e.source for e in events], [e.source_event_id for e in events],
                                                   len(events) + len(earlier)])
            found, ids = cursor.fetchone()
        recorded = {tuple(key.split("/", 1)) for key in found}
    else:
        recorded, ids = _recorded(events), None
    out = [None if (e.source, e.source_event_id) in recorded else e for e in events]
    _chain_locked(heads, [e for e in out if e is not None], timezone.now(), earlier=earlier, ids=ids)
    return out


# Every column of audit_accessevent, in the order _insert writes them.
_COPY_ATTRS = ("id", "occurred_at", "recorded_at", "patient_id", "study_id", "actor_type", "actor_name",
               "actor_ref", "organization", "role", "purpose", "action", "outcome", "source", "source_event_id",
               "ip", "user_agent", "details", "seq", "prev_hash", "hash")


def _insert(events: list[AccessEvent], ids: list[int] | None = None) -> None:
    """Insert chained events in their order, setting their ids.

    On PostgreSQL: the ids are taken from the table's sequence (under the heads' locks, so each
    patient's seq follows id order, as audit/checkpoints.py relies on) and the rows go in with
    COPY. ``bulk_create`` built one INSERT of 20 parameters a row through Django's compiler and
    psycopg's client-side quoting: about 90 ms of a 500-event batch's 150 ms under the locks,
    against about 20 ms this way (benchmarks/access_log_ingest.py, the insert step).
    """
    if connection.vendor != "postgresql":
        AccessEvent.objects.bulk_create(events)
        return
    table = AccessEvent._meta.db_table
    columns = ", ".join(connection.ops.quote_name(_column(a)) for a in _COPY_ATTRS)
    with connection.cursor() as cursor:
        if ids is None:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(events)]
            )
            ids = [row[0] for row in cursor.fetchall()]
        for event, pk in zip(events, sorted(ids), strict=False):  # ids may outnumber the events
            event.pk = pk
        with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for event in events:
                row = [getattr(event, a) for a in _COPY_ATTRS]
                row[_DETAILS] = json.dumps(event.details)  # jsonb from its text; the dict was hashed
                copy.write_row(row)
    for event in events:
        event._state.adding = False
        event._state.db = connection.alias


_DETAILS = _COPY_ATTRS.index("details")
# What a queued event keeps (PendingAccessEvent.fields): every column but the id, and the time of
# recording, chain position and hashes, which chaining sets.
_QUEUED_ATTRS = tuple(a for a in _COPY_ATTRS if a not in ("id", "recorded_at", "seq", "prev_hash", "hash"))


def _column(attname: str) -> str:
    columns = {f.attname: f.column for f in AccessEvent._meta.concrete_fields}
    if set(columns) != set(_COPY_ATTRS):  # a field added to the model must be added here too
        raise AssertionError(f"_COPY_ATTRS differs from AccessEvent's columns: {sorted(set(columns) ^ set(_COPY_ATTRS))}")
    return columns[attname]


def _advance_heads_and_count(heads: list[ChainHead], events: list[AccessEvent]) -> None:
    """Set the moved heads and add the events to the monthly counts: one statement on PostgreSQL
    (the heads' UPDATE as a data-modifying CTE of the counts' upsert)."""
    counts: dict[tuple, int] = {}
    for e in events:
        key = (e.patient_id, month_of(e.occurred_at), e.actor_type, e.organization, e.purpose)
        counts[key] = counts.get(key, 0) + 1
    if connection.vendor != "postgresql":
        ChainHead.objects.bulk_update(heads, ["seq", "last_hash"])
    heads_sql = (
        "UPDATE audit_chainhead AS h SET seq = v.seq, last_hash = v.last_hash FROM (VALUES "  # noqa: S608 - placeholders only
        + ", ".join(["(%s::bigint, %s::bigint, %s::varchar)"] * len(heads))
        + ") AS v(patient_id, seq, last_hash) WHERE h.patient_id = v.patient_id"
    )
    counts_sql = (
        "INSERT INTO audit_monthlyaccesscount (patient_id, month, actor_type, organization, purpose, count) VALUES "  # noqa: S608 - placeholders only
        + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(counts))
        + " ON CONFLICT (patient_id, month, actor_type, organization, purpose) "
        "DO UPDATE SET count = audit_monthlyaccesscount.count + EXCLUDED.count"
    )
    # Sorted keys: one patient's rows are only touched under its head lock, but a fixed order
    # costs nothing and keeps any two upserts from waiting on each other crosswise.
    count_params = [x for key, n in sorted(counts.items()) for x in (*key, n)]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(counts_sql, count_params)
            return
        cursor.execute(
            f"WITH heads AS ({heads_sql}) {counts_sql}",
            [x for h in heads for x in (h.patient_id, h.seq, h.last_hash)] + count_params,
        )


_COUNT_SQL = """
    INSERT INTO audit_monthlyaccesscount (patient_id, month, actor_type, organization, purpose, count)
    VALUES (%s, %s, %s, %s, %s, 1)
    ON CONFLICT (patient_id, month, actor_type, organization, purpose)
    DO UPDATE SET count = audit_monthlyaccesscount.count + 1
"""


def month_of(value: dt.datetime) -> dt.date:
    """The first day of ``value``'s month in UTC: the bucket of the monthly counts."""
    return value.astimezone(dt.UTC).date().replace(day=1)


def _count_month(event: AccessEvent) -> None:
    # One upsert (PostgreSQL and SQLite both speak ON CONFLICT); the chain-head lock held by
    # the caller serialises writers for this patient, so the increment never races.
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNT_SQL,
            [event.patient_id, month_of(event.occurred_at), event.actor_type, event.organization, event.purpose],
        )


def record_for_actor(
    *,
    actor: Actor,
    patient: Patient,
    action: str,
    study: Study | None = None,
    purpose: str | None = None,
    outcome: str = "success",
    occurred_at: dt.datetime | None = None,
    details: dict[str, Any] | None = None,
    source: str | None = None,
) -> AccessEvent:
    """Record ``actor``'s access to ``patient``'s records, named as the patient will read it.

    Installed as ``core.access_log.record`` (the port every service writes through). Callers:
    services, after their selector (``for_actor``) allowed the access, inside its transaction.

    - a patient: "Patient (self)", purpose ``patient_request`` unless given;
    - a privacy officer: their display name (``User.public_name``, never an email), role and the hospital's name, purpose
      ``privacy_investigation`` unless given;
    - a service account: its name, organisation and type, source ``api``;
    - a command or task (``Actor.system``): its name and the hospital's name;
    - a proxy: their own display name, role "parent acting on behalf of the patient".

    Anyone else (an administrator, an anonymous request), and any actor whose ``for_actor`` rule
    does not reach ``patient``, raises ``PermissionDenied``: reaching here is a bug and the action
    must not go ahead unrecorded.
    """
    if not actor.may_reach(patient.pk):
        raise PermissionDenied("This actor may not reach this patient's records.")
    kind = actor.kind
    fields: dict[str, str]
    if kind == Kind.PATIENT:
        fields = {"actor_type": AccessEvent.ActorType.PATIENT, "actor_name": "Patient (self)",
                  "purpose": purpose or AccessEvent.Purpose.PATIENT_REQUEST}
    elif kind == Kind.PRIVACY_OFFICER:
        fields = {"actor_type": AccessEvent.ActorType.PRIVACY_OFFICE, "actor_name": actor.name,
                  "organization": actor.organization or settings.HOSPITAL_NAME, "role": actor.role or "Privacy officer",
                  "purpose": purpose or AccessEvent.Purpose.PRIVACY_INVESTIGATION}
    elif kind == Kind.SERVICE:
        fields = {"actor_type": actor.service_type or AccessEvent.ActorType.SERVICE, "actor_name": actor.name,
                  "organization": actor.organization, "purpose": purpose or AccessEvent.Purpose.OPERATIONS}
        source = source or AccessEvent.Source.API
    elif kind == Kind.PROXY:
        # The proxy's own name "on behalf of" the patient (docs/security.md §28): never "Patient (self)".
        fields = {"actor_type": AccessEvent.ActorType.PROXY, "actor_name": actor.name,
                  "role": f"{actor.proxy_relationship or 'proxy'} acting on behalf of the patient",
                  "purpose": purpose or AccessEvent.Purpose.PATIENT_REQUEST}
    elif kind == Kind.SYSTEM:
        fields = {"actor_type": AccessEvent.ActorType.SYSTEM, "actor_name": actor.name,
                  "organization": actor.organization, "role": actor.role,
                  "purpose": purpose or AccessEvent.Purpose.OPERATIONS}
    elif kind == Kind.SHARE_RECIPIENT:
        # A clinician the patient shared studies with (docs/security.md §27), named as the patient
        # named them; the details say which share it came through.
        fields = {"actor_type": AccessEvent.ActorType.CLINICIAN, "actor_name": actor.name,
                  "organization": actor.organization, "role": actor.role,
                  "purpose": purpose or AccessEvent.Purpose.TREATMENT}
        details = {**(details or {}), "via": "share", "share": actor.share_id}
    else:
        raise PermissionDenied("This account may not access patients' records.")
    return record_access(
        patient=patient,
        study=study,
        action=action,
        outcome=outcome,
        occurred_at=occurred_at,
        actor_ref=actor.ref,
        source=source or AccessEvent.Source.PORTAL,
        ip=actor.ip,
        user_agent=actor.user_agent,
        details=details,
        **fields,
    )


# --- Verification -------------------------------------------------------------------------

# Rows fetched per round trip while streaming a whole table.
_VERIFY_CHUNK = 2000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # events whose hash was recomputed
    first_bad_event_id: int | None = None  # None when the break is not an event (a missing tail)
    reason: str = ""
    patient_id: int | None = None  # the patient whose chain is broken
    chains: int = 0  # patient chains looked at


@dataclass
class _Chain:
    patient_id: int
    seq: int = 0
    last_hash: str = GENESIS_HASH
    last_event_id: int | None = None

    def feed(self, event: AccessEvent) -> str | None:
        """Check the next event (in seq order) against the chain so far; a reason if it is bad."""
        if event.seq != self.seq + 1:
            if event.seq <= self.seq:
                return (
                    f"sequence number {event.seq} repeats or goes backwards after {self.seq} "
                    "(events were reordered or one was inserted)"
                )
            missing = str(self.seq + 1) if event.seq == self.seq + 2 else f"{self.seq + 1}-{event.seq - 1}"
            return f"sequence jumps from {self.seq} to {event.seq}: event {missing} is missing (deleted)"
        if event.prev_hash != self.last_hash:
            return (
                f"event {event.seq} does not link to event {self.seq} (prev_hash differs): "
                "the chain was altered before this event or this event was moved or inserted"
            )
        if event_hash(event) != event.hash:
            return f"event {event.seq}'s contents do not match its hash: the event was altered"
        self.seq = event.seq
        self.last_hash = event.hash
        self.last_event_id = event.pk
        return None

    def matches(self, head: ChainHead | None) -> bool:
        if head is None:
            return self.seq == 0
        return head.seq == self.seq and head.last_hash == self.last_hash


def _per_patient(
    events: Iterable[AccessEvent], heads: Iterable[ChainHead]
) -> Iterator[tuple[int, ChainHead | None, Iterator[AccessEvent]]]:
    """Merge the two patient-ordered streams: (patient id, head, that patient's events)."""
    head_stream = iter(heads)
    head = next(head_stream, None)
    for patient_id, group in itertools.groupby(events, key=attrgetter("patient_id")):
        while head is not None and head.patient_id < patient_id:
            yield head.patient_id, head, iter(())
            head = next(head_stream, None)
        if head is not None and head.patient_id == patient_id:
            yield patient_id, head, group
            head = next(head_stream, None)
        else:
            yield patient_id, None, group
    while head is not None:
        yield head.patient_id, head, iter(())
        head = next(head_stream, None)


def _settle(chain: _Chain) -> tuple[int, int | None, str | None]:
    """Compare the chain with its head, exactly.

    Heads and events are streamed by separate queries, so a live writer can make them disagree
    innocently. Lock the head (no writer for this patient is then mid-append), verify any
    events written since, and compare. Returns (events checked, bad event id, reason or None).
    """
    checked = 0
    with transaction.atomic():
        head = ChainHead.objects.select_for_update().filter(patient_id=chain.patient_id).first()
        newer = AccessEvent.objects.filter(patient_id=chain.patient_id, seq__gt=chain.seq).order_by("seq", "pk")
        for event in newer:
            checked += 1
            reason = chain.feed(event)
            if reason:
                return checked, event.pk, reason
    if chain.matches(head):
        return checked, None, None
    if head is None:
        return checked, chain.last_event_id, f"the chain has {chain.seq} events but no chain head"
    if head.seq > chain.seq:
        return (
            checked,
            None,
            f"the chain head records {head.seq} events but the last one present is event {chain.seq} "
            f"(id {chain.last_event_id}): the events after it were deleted",
        )
    if head.seq < chain.seq:
        extra = AccessEvent.objects.filter(patient_id=chain.patient_id, seq=head.seq + 1).values_list("pk", flat=True)
        return (
            checked,
            extra.first(),
            f"event {head.seq + 1} and later are past the chain head ({head.seq}): they were added behind "
            "the service's back, or the head was rolled back",
        )
    return (
        checked,
        chain.last_event_id,
        f"the chain head's hash differs from the hash of the last event ({chain.seq}): "
        "the head or the last event was rewritten",
    )


def chain_verify(patient: Patient | None = None) -> VerifyResult:
    """Recompute every hash of ``patient``'s chain (all patients when None) and stop at the
    first break: an altered event, a broken link, a gap or repeat in ``seq`` (deletion,
    reordering, insertion), or a chain head that does not match the last event.

    Callers: ``manage.py verify_audit`` and the privacy office's integrity checks. Streams
    the table in (patient, seq) order, so memory stays flat however long the log is.
    """
    events = AccessEvent.objects.order_by("patient_id", "seq", "pk")
    heads = ChainHead.objects.order_by("patient_id")
    if patient is not None:
        events = events.filter(patient=patient)
        heads = heads.filter(patient=patient)
    checked = 0
    chains = 0
    streams = _per_patient(events.iterator(chunk_size=_VERIFY_CHUNK), heads.iterator(chunk_size=_VERIFY_CHUNK))
    for patient_id, head, group in streams:
        chains += 1
        chain = _Chain(patient_id)
        for event in group:
            checked += 1
            reason = chain.feed(event)
            if reason:
                return VerifyResult(False, checked, event.pk, reason, patient_id, chains)
        if chain.matches(head):
            continue
        more, bad_id, reason = _settle(chain)
        checked += more
        if reason:
            return VerifyResult(False, checked, bad_id, reason, patient_id, chains)
    return VerifyResult(True, checked, chains=chains)

"""Signed checkpoints of the access log, a Merkle tree over it, and receipts (docs/security.md §20).

Every event, in the order checkpoints first see it, is a leaf of one Merkle tree (RFC 9162,
audit/merkle.py; the leaf is the event's chain hash, which covers its patient, its place in the
chain and its contents). ``checkpoint_create`` (Celery beat every ``AUDIT_CHECKPOINT_MINUTES``,
and once when a worker starts on a database with none) appends the events not yet in the tree,
then signs with the hospital's Ed25519 key (core.signing; public key at
``/.well-known/lightbox-signing-key.pem``) a statement holding:

- the tree's size and root: every event so far, in order;
- ``previous``: the SHA-256 of the previous checkpoint's statement, so checkpoints form a chain
  and a missing or replaced one shows;
- the SHA-256 of the chain heads that changed since the previous checkpoint ({patient id:
  [seq, hash]}, all of them for the first), kept beside the statement so a verifier can name the
  patient and the event that went missing.

Nothing changed since the last checkpoint: no new one is made (the last still covers everything).

Copies kept outside the database make the log provable to others: ``export_audit_checkpoints
--out FILE`` for an outside party, and the patient's receipt (``receipt_for``: their newest covered
event, the checkpoint and the inclusion proof linking them, after C2SP tlog-proof). Someone who
can write to the database, and holds the key, can rebuild every chain, the tree and the checkpoint
table consistently, but cannot make the new tree hash to a root that a kept copy already signed.

Patients appear only by internal id, never by name or MRN. Format-1 checkpoints (made before the
tree, every chain head, no ``previous``) are still verified as they were; the first format-2
checkpoint names the newest of them as its previous.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from audit import merkle
from audit.models import AccessEvent, AuditCheckpoint, AuditLeaf, AuditTreeTile
from core import signing
from imaging.models import Patient

FORMAT_V1 = "lightbox-audit-checkpoint/1"
FORMAT = "lightbox-audit-checkpoint/2"
RECEIPT_FORMAT = "lightbox-access-log-receipt/1"
# A receipt makes a fresh checkpoint only when the newest is older than this (a patient who
# downloads again and again must not fill the table); otherwise it covers up to the newest.
RECEIPT_FRESH_SECONDS = 60
_CHUNK = 5000
_LOCK_ID = 0x4C42_4350  # "LBCP": one checkpoint writer at a time (PostgreSQL advisory lock)
TILE = AuditTreeTile.TILE_SIZE


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def heads_digest(heads: dict[str, list]) -> str:
    return hashlib.sha256(_canonical(heads).encode("utf-8")).hexdigest()


def statement_hash(statement: str) -> str:
    """A checkpoint's identity: SHA-256 of its signed statement (what the next one names)."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


def _lock() -> None:
    # SQLite (make run) serialises writers on its own; PostgreSQL needs the lock, or two
    # checkpoints could append the same events at the same indexes (the second would then fail).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])


# --- Making checkpoints ----------------------------------------------------------------------


def _pending_events():
    """Events not yet in the tree. Usually exactly those past the largest event id in the tree: checked
    by counting in one statement (an index scan), so a checkpoint of a log of a million events
    does not anti-join the whole table. A transaction that committed late, with a smaller id
    than events already covered, makes the counts differ: then every event without a leaf."""
    newest = AuditLeaf.objects.aggregate(newest=Max("event_id"))["newest"] or 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM audit_accessevent WHERE id <= %s), (SELECT count(*) FROM audit_auditleaf)",
            [newest],
        )
        covered, leaves = cursor.fetchone()
    if covered == leaves:
        return AccessEvent.objects.filter(pk__gt=newest)
    return AccessEvent.objects.filter(~Exists(AuditLeaf.objects.filter(event_id=OuterRef("pk"))))


@transaction.atomic
def checkpoint_create(*, skip_unchanged: bool = False, only_if_none: bool = False) -> AuditCheckpoint | None:
    """Append the events not yet in the tree and sign a checkpoint of it. Returns it, or None
    when ``only_if_none`` and one exists, or ``skip_unchanged`` and no event is new.

    Callers: the ``audit.create_checkpoint`` task (beat, and a worker's first start),
    ``export_audit_checkpoints --create`` and ``receipt_for``. Reads no patient data beyond ids,
    sequence numbers and hashes. Costs O(new events): the tree's right edge is kept in the row.
    """
    _lock()
    latest = AuditCheckpoint.objects.order_by("-pk").first()
    if only_if_none and latest is not None:
        return None
    v2 = latest is not None and latest.tree_size is not None
    size = latest.tree_size if v2 else 0
    tiles: list[AuditTreeTile] = []

    def completed(level: int, index: int, h: bytes) -> None:
        if level == AuditTreeTile.TILE_LEVEL:
            tiles.append(AuditTreeTile(index=index, hash=h.hex()))

    edge = merkle.CompactRange(size, [bytes.fromhex(h) for h in latest.edge] if v2 else [], completed)
    chains = latest.chains if v2 else 0
    heads: dict[str, list] = {}
    pending = _pending_events()
    leaves: list[AuditLeaf] = []
    # id order keeps each chain in seq order: a patient's next event is inserted under its chain
    # head's lock, after the one before it committed.
    for pk, patient_id, seq, event_hash in pending.order_by("pk").values_list("pk", "patient_id", "seq", "hash").iterator(
        chunk_size=_CHUNK
    ):
        leaves.append(AuditLeaf(index=edge.size, event_id=pk, patient_id=patient_id, seq=seq))
        edge.append(merkle.leaf_hash(bytes.fromhex(event_hash)))
        heads[str(patient_id)] = [seq, event_hash]
        chains += seq == 1
        if len(leaves) >= _CHUNK:
            AuditLeaf.objects.bulk_create(leaves)
            leaves = []
    AuditLeaf.objects.bulk_create(leaves)
    AuditTreeTile.objects.bulk_create(tiles)
    if skip_unchanged and v2 and edge.size == size:
        return None
    created_at = timezone.now()
    heads = dict(sorted(heads.items(), key=lambda item: int(item[0])))
    statement = {
        "format": FORMAT,
        "created_at": created_at.isoformat(),
        "previous": statement_hash(latest.statement) if latest is not None else None,
        "tree_size": edge.size,
        "root": edge.root().hex(),
        "chains": chains,
        "events": edge.size,
        "heads_sha256": heads_digest(heads),
    }
    text = _canonical(statement)
    checkpoint = AuditCheckpoint(
        created_at=created_at, chains=chains, events=edge.size, heads=heads, statement=text,
        signature=signing.private_key().sign(text.encode("utf-8")).hex(),
        tree_size=edge.size, root=statement["root"], previous=statement["previous"] or "",
        edge=[h.hex() for h in edge.hashes],
    )
    checkpoint.full_clean(exclude=["heads"])  # {} when the log is empty (a new install's first)
    checkpoint.save(force_insert=True)
    return checkpoint


def checkpoint_document(checkpoint: AuditCheckpoint, *, heads: bool = True) -> dict[str, Any]:
    """The exportable form: the signed statement (verbatim), its signature and the heads."""
    doc = {
        "statement": checkpoint.statement,
        "signature": checkpoint.signature,
        "signature_algorithm": "Ed25519",
        "public_key_pem": signing.public_key_pem().decode("ascii"),
    }
    if heads:
        doc["heads"] = checkpoint.heads
    return doc


# --- The tree as stored ------------------------------------------------------------------------


class TreeError(Exception):
    """The stored tree lacks leaves or tiles it should have."""


def _leaf_hashes(start: int, end: int) -> list[bytes]:
    rows = list(AuditLeaf.objects.filter(index__gte=start, index__lt=end).order_by("index").values_list("event__hash", flat=True))
    if len(rows) != end - start:
        raise TreeError(f"the tree lacks leaves between {start} and {end}")
    return [merkle.leaf_hash(bytes.fromhex(h)) for h in rows]


def stored_hash_range(start: int, end: int) -> bytes:
    """MTH of leaves [start, end) from the stored tree: whole tiles where the range is one or more
    aligned tiles, the leaves otherwise. A proof in a tree of n leaves reads at most n/256 tiles
    and a few hundred leaves."""
    n = end - start
    if n <= TILE:
        return merkle.root_of(_leaf_hashes(start, end))
    if n & (n - 1) == 0 and start % n == 0:
        tiles = list(
            AuditTreeTile.objects.filter(index__gte=start // TILE, index__lt=end // TILE).order_by("index").values_list("hash", flat=True)
        )
        if len(tiles) != n // TILE:
            raise TreeError(f"the tree lacks tiles between leaves {start} and {end}")
        return merkle.perfect_root([bytes.fromhex(t) for t in tiles])
    k = 1 << ((n - 1).bit_length() - 1)
    return merkle.node_hash(stored_hash_range(start, start + k), stored_hash_range(start + k, end))


@dataclass
class TreeScan:
    roots: dict[int, bytes] = field(default_factory=dict)  # tree size -> root recomputed from the events
    size: int = 0  # leaves found in order from 0
    problems: list[str] = field(default_factory=list)


def tree_scan(sizes: set[int]) -> TreeScan:
    """Recompute the tree from the events themselves (each leaf's event and its current hash) and
    give its root at each of ``sizes``; checks each leaf names its event's patient and seq, and
    each stored tile. One pass in index order: O(events), memory flat."""
    scan = TreeScan()
    tiles = dict(AuditTreeTile.objects.values_list("index", "hash"))

    def completed(level: int, index: int, h: bytes) -> None:
        if level == AuditTreeTile.TILE_LEVEL and tiles.pop(index, h.hex()) != h.hex():
            scan.problems.append(f"tile {index} of the tree does not match its leaves")

    edge = merkle.CompactRange(on_complete=completed)
    if 0 in sizes:
        scan.roots[0] = merkle.EMPTY_ROOT
    rows = AuditLeaf.objects.order_by("index").values_list(
        "index", "patient_id", "seq", "event__patient_id", "event__seq", "event__hash"
    )
    for index, patient_id, seq, event_patient, event_seq, event_hash in rows.iterator(chunk_size=_CHUNK):
        if index != edge.size:
            scan.problems.append(f"leaf {edge.size} of the tree is missing")
            break
        if (patient_id, seq) != (event_patient, event_seq):
            scan.problems.append(f"leaf {index} names patient {patient_id} event {seq}, but its event is another")
        edge.append(merkle.leaf_hash(bytes.fromhex(event_hash)))
        if edge.size in sizes:
            scan.roots[edge.size] = edge.root()
    scan.size = edge.size
    if tiles and not scan.problems:
        scan.problems.append(f"the tree has tiles past its leaves ({', '.join(map(str, sorted(tiles)[:5]))})")
    return scan


# --- Verifying ---------------------------------------------------------------------------------


def _signed_statement(doc: dict[str, Any]) -> dict[str, Any] | None:
    try:
        signing.private_key().public_key().verify(bytes.fromhex(doc["signature"]), doc["statement"].encode("utf-8"))
        statement = json.loads(doc["statement"])
    except (InvalidSignature, ValueError, KeyError, TypeError, AttributeError):
        return None
    return statement if isinstance(statement, dict) else None


def _label(statement: dict[str, Any]) -> str:
    size = statement.get("tree_size")
    return f"the checkpoint of {statement.get('created_at', '?')}" + (f" (tree size {size})" if size is not None else "")


def _heads_problems(heads: dict[str, Any], patient_id: int | None = None) -> list[str]:
    """Each head (patient: [seq, hash]) must still be that patient's event seq, with that hash."""
    problems: list[str] = []
    for pid, (seq, expected) in heads.items():
        if seq == 0 or (patient_id is not None and int(pid) != patient_id):
            continue
        found = AccessEvent.objects.filter(patient_id=int(pid), seq=seq).values_list("hash", flat=True).first()
        if found is None:
            problems.append(f"patient {pid}: event {seq}, signed in the checkpoint, is missing")
        elif found != expected:
            problems.append(f"patient {pid}: event {seq} no longer has the hash signed in the checkpoint (history rewritten)")
        if len(problems) >= 20:
            break
    return problems


def checkpoint_verify(
    checkpoint: AuditCheckpoint | dict[str, Any], *, roots: dict[int, bytes] | None = None, patient_id: int | None = None
) -> list[str]:
    """Problems with a checkpoint (stored or exported document); empty when it holds.

    Checks the signature, that the heads match the signed digest, that each patient's chain still
    has, at the checkpoint's seq, the event whose hash was signed (only ``patient_id``'s when
    given), and, for format 2 with ``roots`` (from ``tree_scan``), that the tree recomputed from
    today's events still has the signed root at the signed size."""
    doc = checkpoint_document(checkpoint) if isinstance(checkpoint, AuditCheckpoint) else checkpoint
    statement = _signed_statement(doc)
    if statement is None:
        return ["the checkpoint's signature does not verify with Lightbox's public key"]
    heads = doc.get("heads") or {}
    if not isinstance(heads, dict) or statement.get("heads_sha256") != heads_digest(heads):
        return ["the checkpoint's chain heads do not match the signed digest"]
    problems: list[str] = []
    if statement.get("format") == FORMAT and roots is not None:
        size = statement.get("tree_size")
        if roots.get(size) is None:
            problems.append(f"{_label(statement)} covers {size} events, but the log's tree has fewer: events were removed")
        elif roots[size].hex() != statement.get("root"):
            problems.append(
                f"{_label(statement)}: the log's first {size} events no longer hash to the signed root "
                "(events were removed, changed or reordered)"
            )
        elif patient_id is None:
            # The root recomputed from today's events covers every head: one query per head is
            # needed only to name what went missing (O(heads changed) in all, not per checkpoint).
            return problems
    return _heads_problems(heads, patient_id) + problems


@dataclass
class Report:
    problems: list[str]
    checked: int = 0  # checkpoints verified
    latest: AuditCheckpoint | None = None


def verify_stored(*, patient: Patient | None = None) -> Report:
    """Every checkpoint in the database: signature, the row against its statement, the chain of
    ``previous`` hashes (none missing, none replaced), each checkpoint's heads, and (all patients)
    each format-2 root against the tree recomputed from the events. With ``patient``: only that
    patient's heads, and the patient's newest covered event proven into the newest root.

    Callers: ``verify_audit``. Reads ids and hashes only."""
    problems: list[str] = []
    checkpoints = list(AuditCheckpoint.objects.order_by("pk"))
    scan = tree_scan({c.tree_size for c in checkpoints if c.tree_size is not None}) if patient is None else None
    if scan is not None:
        problems += scan.problems
    previous: AuditCheckpoint | None = None
    seen_v2 = False
    for checkpoint in checkpoints:
        statement = _signed_statement(checkpoint_document(checkpoint))
        label = f"checkpoint {checkpoint.pk} ({checkpoint.created_at:%Y-%m-%d %H:%M})"
        if statement is None:
            problems.append(f"{label}: its signature does not verify with Lightbox's public key")
            previous = checkpoint
            continue
        if statement.get("format") == FORMAT:
            seen_v2 = True
            expected = statement_hash(previous.statement) if previous is not None else None
            if statement.get("previous") != expected:
                problems.append(f"{label} does not name the checkpoint before it: a checkpoint is missing or was replaced")
            if (checkpoint.tree_size, checkpoint.root, checkpoint.previous or None) != (
                statement.get("tree_size"), statement.get("root"), statement.get("previous")
            ):
                problems.append(f"{label}: the row differs from its signed statement")
        elif seen_v2:
            problems.append(f"{label}: an old-format checkpoint after the chained ones (inserted later)")
        problems += [f"{label}: {p}" for p in checkpoint_verify(checkpoint, roots=scan.roots if scan else None,
                                                                   patient_id=patient.pk if patient else None)]
        previous = checkpoint
        if len(problems) >= 20:
            break
    latest = checkpoints[-1] if checkpoints else None
    if patient is not None and latest is not None and latest.tree_size:
        problems += _inclusion_problems(patient, latest)
    return Report(problems, len(checkpoints), latest)


def _inclusion_problems(patient: Patient, checkpoint: AuditCheckpoint) -> list[str]:
    leaf = AuditLeaf.objects.filter(patient=patient, index__lt=checkpoint.tree_size).order_by("-index").first()
    if leaf is None:
        return []
    event_hash = AccessEvent.objects.filter(pk=leaf.event_id).values_list("hash", flat=True).first()
    try:
        proof = merkle.inclusion_proof(leaf.index, checkpoint.tree_size, stored_hash_range)
    except TreeError as exc:
        return [f"patient {patient.pk}: {exc}"]
    if event_hash is None or not merkle.verify_inclusion(
        leaf.index, checkpoint.tree_size, merkle.leaf_hash(bytes.fromhex(event_hash)), proof, bytes.fromhex(checkpoint.root)
    ):
        return [f"patient {patient.pk}: event {leaf.seq} is not in the newest checkpoint's tree as signed"]
    return []


def verify_documents(documents: list[dict[str, Any]]) -> list[str]:
    """An outside party's copy (``export_audit_checkpoints --out``) against the database: every
    checkpoint in it must be in the database unchanged, and every event it covers still there
    and unchanged (its heads, and the tree recomputed from the events at its size)."""
    problems: list[str] = []
    stored = {c.statement: c for c in AuditCheckpoint.objects.all()}
    statements = [_signed_statement(doc) if isinstance(doc, dict) else None for doc in documents]
    scan = tree_scan({s["tree_size"] for s in statements if s and isinstance(s.get("tree_size"), int)})
    problems += scan.problems
    for number, (doc, statement) in enumerate(zip(documents, statements, strict=True), start=1):
        if statement is None:
            problems.append(f"checkpoint {number} in the file: its signature does not verify with Lightbox's public key")
            continue
        label = _label(statement)
        row = stored.get(doc["statement"])
        if row is None:
            problems.append(f"{label} is missing from the database")
        elif row.signature != doc["signature"] or (doc.get("heads") is not None and row.heads != doc["heads"]):
            problems.append(f"{label} is different in the database")
        problems += [f"{label}: {p}" for p in checkpoint_verify(doc, roots=scan.roots)]
    return problems


# --- Receipts ----------------------------------------------------------------------------------


def receipt_for(patient: Patient) -> dict[str, Any]:
    """The patient's receipt: their newest event covered by a checkpoint, that checkpoint (signed
    statement, no other patient's heads) and the inclusion proof from the event to its root.
    Makes a checkpoint first when none covers the patient's events yet or the newest is older
    than ``RECEIPT_FRESH_SECONDS``. Callers: ``audit.reads.access_log_receipt`` (which records
    the download first, in the same transaction, so a fresh receipt covers it too)."""
    latest = AuditCheckpoint.objects.filter(tree_size__isnull=False).order_by("-pk").first()
    stale = latest is None or latest.created_at < timezone.now() - dt.timedelta(seconds=RECEIPT_FRESH_SECONDS)
    leaf = _newest_leaf(patient, latest)
    if leaf is None or stale:
        latest = checkpoint_create(skip_unchanged=True) or AuditCheckpoint.objects.order_by("-pk").first()
        leaf = _newest_leaf(patient, latest)
    if leaf is None or latest is None:  # an empty chain: nothing to witness yet
        raise TreeError("no checkpoint covers this patient's log")
    event_hash = AccessEvent.objects.filter(pk=leaf.event_id).values_list("hash", flat=True).get()
    proof = merkle.inclusion_proof(leaf.index, latest.tree_size, stored_hash_range)
    return {
        "format": RECEIPT_FORMAT,
        # The layout of C2SP tlog-proof (https://c2sp.org/tlog-proof): an entry's index, the
        # inclusion proof, and the signed checkpoint, as JSON with hex hashes.
        "modelled_on": "c2sp.org/tlog-proof@v1",
        "patient": patient.pk,
        "head": {"seq": leaf.seq, "hash": event_hash},
        "index": leaf.index,
        "inclusion_proof": [h.hex() for h in proof],
        "checkpoint": checkpoint_document(latest, heads=False),
        "site": settings.SITE_URL,
    }


def _newest_leaf(patient: Patient, checkpoint: AuditCheckpoint | None) -> AuditLeaf | None:
    if checkpoint is None or not checkpoint.tree_size:
        return None
    return AuditLeaf.objects.filter(patient=patient, index__lt=checkpoint.tree_size).order_by("-index").first()


def verify_receipt(receipt: dict[str, Any]) -> list[str]:
    """A patient's receipt against the database: the receipt itself must hold (signature, proof
    to the signed root), and the log must still hold everything it covered: the patient's event
    at the receipt's seq with the same hash (whose chain covers every earlier event), the signed
    checkpoint, and the tree's root at its size, recomputed from the events."""
    from audit.services import chain_verify

    if receipt.get("format") != RECEIPT_FORMAT:
        raise ValueError(f"not an access-log receipt (format {receipt.get('format')!r}, expected {RECEIPT_FORMAT!r})")
    try:
        patient_id, seq, head_hash = int(receipt["patient"]), int(receipt["head"]["seq"]), str(receipt["head"]["hash"])
        index, proof = int(receipt["index"]), [bytes.fromhex(h) for h in receipt["inclusion_proof"]]
        doc = receipt["checkpoint"]
        leaf = merkle.leaf_hash(bytes.fromhex(head_hash))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the receipt lacks or garbles a field ({exc})") from exc
    statement = _signed_statement(doc) if isinstance(doc, dict) else None
    if statement is None or statement.get("format") != FORMAT:
        return ["the receipt's checkpoint is not signed by Lightbox's key"]
    size, root = statement.get("tree_size"), statement.get("root")
    if not isinstance(size, int) or not merkle.verify_inclusion(index, size, leaf, proof, bytes.fromhex(str(root))):
        return ["the receipt's proof does not lead from its entry to the signed root: the file was altered"]
    problems: list[str] = []
    label = _label(statement)
    found = AccessEvent.objects.filter(patient_id=patient_id, seq=seq).values_list("hash", flat=True).first()
    if found is None:
        last = AccessEvent.objects.filter(patient_id=patient_id).order_by("-seq").values_list("seq", flat=True).first()
        problems.append(
            f"patient {patient_id}: event {seq}, the last entry the receipt covers, is missing "
            f"(the log now ends at event {last or 0}): entries were removed"
        )
    elif found != head_hash:
        problems.append(
            f"patient {patient_id}: event {seq} no longer has the hash in the receipt: "
            "this entry or one before it was removed or changed"
        )
    if not problems:
        patient = Patient.objects.filter(pk=patient_id).first()
        result = chain_verify(patient) if patient is not None else None
        if result is None or not result.ok:
            problems.append(f"patient {patient_id}: the chain no longer verifies" + (f": {result.reason}" if result else ""))
    if not AuditCheckpoint.objects.filter(statement=doc["statement"]).exists():
        problems.append(f"{label}, which the receipt carries, is missing from the database")
    scan = tree_scan({size})
    if scan.roots.get(size) is None:
        problems.append(f"{label} covers {size} events, but the log's tree has fewer: events were removed")
    elif scan.roots[size].hex() != root:
        problems.append(f"{label}: the log's first {size} events no longer hash to the signed root (events were removed or changed)")
    return problems

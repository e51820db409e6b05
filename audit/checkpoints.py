"""Signed checkpoints of every chain head.

Once a day ``checkpoint_create`` snapshots (patient id, seq, hash) of every chain head and signs
a statement holding their SHA-256 with the hospital's Ed25519 key (core.signing; public key at
``/.well-known/lightbox-signing-key.pem``). ``export_audit_checkpoints`` writes them as JSON for
someone outside the hospital to keep. Later, anyone can check with the public key that the
statement is genuine, and ``checkpoint_verify`` checks that every chain still passes through the
hash it had then: rewriting history before a checkpoint would need the private key *and* every
exported copy. Patients appear only by internal id, never by name or MRN.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from django.db import transaction
from django.utils import timezone

from audit.models import AccessEvent, AuditCheckpoint, ChainHead
from core import signing

FORMAT = "lightbox-audit-checkpoint/1"


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def heads_digest(heads: dict[str, list]) -> str:
    return hashlib.sha256(_canonical(heads).encode("utf-8")).hexdigest()


@transaction.atomic
def checkpoint_create() -> AuditCheckpoint:
    """Snapshot and sign every chain head. Callers: the daily ``audit.create_checkpoint`` task
    and ``export_audit_checkpoints --create``. Reads no patient data beyond ids and hashes."""
    heads = {
        str(pid): [seq, last_hash]
        for pid, seq, last_hash in ChainHead.objects.order_by("patient_id").values_list("patient_id", "seq", "last_hash")
    }
    created_at = timezone.now()
    statement = {
        "format": FORMAT,
        "created_at": created_at.isoformat(),
        "chains": len(heads),
        "events": sum(seq for seq, _h in heads.values()),
        "heads_sha256": heads_digest(heads),
    }
    text = _canonical(statement)
    signature = signing.private_key().sign(text.encode("utf-8")).hex()
    checkpoint = AuditCheckpoint(
        created_at=created_at, chains=statement["chains"], events=statement["events"],
        heads=heads, statement=text, signature=signature,
    )
    checkpoint.full_clean()
    checkpoint.save()
    return checkpoint


def checkpoint_document(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The exportable form: the signed statement (verbatim), its signature and the heads."""
    return {
        "statement": checkpoint.statement,
        "signature": checkpoint.signature,
        "signature_algorithm": "Ed25519",
        "public_key_pem": signing.public_key_pem().decode("ascii"),
        "heads": checkpoint.heads,
    }


def checkpoint_verify(checkpoint: AuditCheckpoint | dict[str, Any]) -> list[str]:
    """Problems with a checkpoint (stored or exported document); empty when it holds.

    Checks the signature, that the heads match the signed digest, and that each patient's chain
    still has, at the checkpoint's seq, the event whose hash was signed."""
    doc = checkpoint_document(checkpoint) if isinstance(checkpoint, AuditCheckpoint) else checkpoint
    problems: list[str] = []
    try:
        signing.private_key().public_key().verify(bytes.fromhex(doc["signature"]), doc["statement"].encode("utf-8"))
        statement = json.loads(doc["statement"])
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return ["the checkpoint's signature does not verify with Lightbox's public key"]
    heads = doc.get("heads") or {}
    if statement.get("heads_sha256") != heads_digest(heads):
        return ["the checkpoint's chain heads do not match the signed digest"]
    for patient_id, (seq, expected) in heads.items():
        if seq == 0:
            continue
        found = AccessEvent.objects.filter(patient_id=int(patient_id), seq=seq).values_list("hash", flat=True).first()
        if found is None:
            problems.append(f"patient {patient_id}: event {seq}, signed in the checkpoint, is missing")
        elif found != expected:
            problems.append(f"patient {patient_id}: event {seq} no longer has the hash signed in the checkpoint (history rewritten)")
        if len(problems) >= 20:
            break
    return problems

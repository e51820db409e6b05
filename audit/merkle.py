"""A Merkle tree over the access log, as RFC 9162 §2.1 defines it (the same tree as RFC 6962).

Leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right), the tree over n
leaves splits at the largest power of two below n. Inclusion proofs (PATH, §2.1.3) and consistency
proofs (PROOF/SUBPROOF, §2.1.4) are generated and verified exactly as the RFC writes them, and
checked in tests/audit/test_merkle.py against the published vectors of transparency-dev/merkle
(proof/verify_test.go, the RFC 6962 test data of Google's Certificate Transparency code).

Written by hand (about a hundred lines) rather than with ``pymerkle``: pymerkle keeps its own copy of
every leaf (in memory or in its own SQLite file) and builds proofs from it, whereas here the leaves
already live in PostgreSQL (``audit.models.AuditLeaf``) and proofs must be built from a few stored
subtree hashes (``AuditTreeTile``) without loading a million leaves. The functions below take a
``hash_range(start, end)`` callback for any subtree hash, so the storage stays with the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HashRange = Callable[[int, int], bytes]  # MTH(D[start:end]) of the caller's leaves


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (each already SHA-256(0x00 || leaf))."""
    if not leaf_hashes:
        return EMPTY_ROOT
    compact = CompactRange()
    for h in leaf_hashes:
        compact.append(h)
    return compact.root()


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree whose 2^k bottom nodes are given (leaf hashes or tile roots)."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def list_hasher(leaf_hashes: Sequence[bytes]) -> HashRange:
    """A ``hash_range`` over leaf hashes held in memory."""
    return lambda start, end: root_of(leaf_hashes[start:end])


class CompactRange:
    """The right edge of a growing tree: one root per set bit of its size (RFC 9162's trees
    decompose that way), so appending costs O(log n) hashes and the whole log is never reread.

    ``on_complete(level, index, hash)`` is told of every perfect subtree of two or more leaves that
    an append completes (level 1 = two leaves; index counts subtrees of that level from the left)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = (), on_complete: Callable[[int, int, bytes], None] | None = None):
        if len(hashes) != bin(size).count("1"):
            raise ValueError("a compact range holds one hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)
        self.on_complete = on_complete

    def append(self, h: bytes) -> None:
        self.hashes.append(h)
        self.size += 1
        level, size = 0, self.size
        while size & 1 == 0:  # two equal subtrees at the edge merge into one twice the size
            right = self.hashes.pop()
            left = self.hashes.pop()
            self.hashes.append(node_hash(left, right))
            size >>= 1
            level += 1
            if self.on_complete is not None:
                self.on_complete(level, (self.size >> level) - 1, self.hashes[-1])

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            result = node_hash(h, result)
        return result


# --- Proofs (RFC 9162 §2.1.3.1 and §2.1.4.1) ---------------------------------------------


def inclusion_proof(index: int, size: int, hash_range: HashRange) -> list[bytes]:
    """PATH(index, D[size])."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(hash_range(start + k, end))
            end = start + k
        else:
            proof.append(hash_range(start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, size: int, hash_range: HashRange) -> list[bytes]:
    """PROOF(old_size, D[size])."""
    if not 0 < old_size <= size:
        raise ValueError(f"no consistency proof from {old_size} to {size}")
    proof: list[bytes] = []
    start, end, m, whole = 0, size, old_size, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                proof.append(hash_range(start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(hash_range(start + k, end))
            end = start + k
        else:
            proof.append(hash_range(start, start + k))
            start, m, whole = start + k, m - k, False
    proof.reverse()
    return proof


# --- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    if not 0 <= index < size or len(leaf) != 32 or any(len(p) != 32 for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion_proof(index, size, leaf, proof) == root


def verify_consistency(old_size: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]) -> bool:
    if old_size > size or any(len(p) != 32 for p in proof):
        return False
    if old_size == size:
        return old_root == root and not proof
    if old_size == 0:
        return not proof  # the empty tree is consistent with every tree
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == root

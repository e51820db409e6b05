"""audit/merkle.py against the published RFC 6962 / RFC 9162 test vectors.

Source of the vectors: transparency-dev/merkle, proof/verify_test.go (commit 02194e9a), the
test data of Google's Certificate Transparency implementation: eight leaves, the tree root at
each size 1..8, and inclusion and consistency proofs.
"""

from __future__ import annotations

import itertools

import pytest

from audit import merkle

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf number from 1, tree size, proof)
INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]
HASH_RANGE = merkle.list_hasher(HASHES)


def _root(size: int) -> bytes:
    return bytes.fromhex(ROOTS[size - 1])


def test_empty_tree_is_the_hash_of_nothing():
    assert merkle.root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_roots(size):
    assert merkle.root_of(HASHES[:size]).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_proofs_are_generated_and_verified_as_published(leaf, size, proof):
    expected = [bytes.fromhex(h) for h in proof]
    assert merkle.inclusion_proof(leaf - 1, size, merkle.list_hasher(HASHES[:size])) == expected
    assert merkle.verify_inclusion(leaf - 1, size, HASHES[leaf - 1], expected, _root(size))
    # Corrupted probes, as the reference's corruptInclusionProof: none may verify.
    probes = [(leaf - 2, size, HASHES[leaf - 1], expected), (leaf, size, HASHES[leaf - 1], expected),
              (leaf - 1, size * 2, HASHES[leaf - 1], expected), (leaf - 1, size, merkle.leaf_hash(b"WrongLeaf"), expected),
              (leaf - 1, size, HASHES[leaf - 1], [*expected, _root(size)]),
              (leaf - 1, size, HASHES[leaf - 1], [_root(size), *expected])]
    probes += [(leaf - 1, size, HASHES[leaf - 1], expected[:i] + [bytes([expected[i][0] ^ 8]) + expected[i][1:]] + expected[i + 1:])
               for i in range(len(expected))]
    if expected:
        probes.append((leaf - 1, size, HASHES[leaf - 1], expected[:-1]))
    for index, tree_size, leaf_hash, bad in probes:
        assert not merkle.verify_inclusion(index, tree_size, leaf_hash, bad, _root(size)), (index, tree_size)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_are_generated_and_verified_as_published(old, new, proof):
    expected = [bytes.fromhex(h) for h in proof]
    assert merkle.consistency_proof(old, new, merkle.list_hasher(HASHES[:new])) == expected
    assert merkle.verify_consistency(old, new, _root(old), _root(new), expected)
    if not expected:
        return
    probes = [(old - 1, new, _root(old), _root(new), expected), (old + 1, new, _root(old), _root(new), expected),
              (old, new * 2, _root(old), _root(new), expected), (old, new, _root(new), _root(old), expected),
              (old, new, _root(old), _root(new), []), (old, new, _root(old), _root(new), expected[:-1]),
              (old, new, _root(old), _root(new), [*expected, _root(old)]),
              (old, new, _root(old), _root(new), [expected[0], *expected])]
    probes += [(old, new, _root(old), _root(new), expected[:i] + [bytes([expected[i][0] ^ 16]) + expected[i][1:]] + expected[i + 1:])
               for i in range(len(expected))]
    for size1, size2, root1, root2, bad in probes:
        if 0 < size1 <= 8 and 0 < size2 <= 8 and (size1, size2) != (old, new):
            continue  # another valid pair of sizes may be consistent by coincidence only with its own roots
        assert not merkle.verify_consistency(size1, size2, root1, root2, bad), (size1, size2)


def test_every_proof_in_larger_trees_verifies_and_the_compact_range_agrees():
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(70)]
    hash_range = merkle.list_hasher(hashes)
    roots = {n: merkle.root_of(hashes[:n]) for n in range(1, 71)}
    completed = []
    edge = merkle.CompactRange(on_complete=lambda level, index, h: completed.append((level, index, h)))
    for n, h in enumerate(hashes, start=1):
        edge.append(h)
        assert edge.root() == roots[n]
    # Every subtree the compact range reports finished is MTH of its leaves.
    for level, index, h in completed:
        assert h == merkle.root_of(hashes[index << level:(index + 1) << level])
    for size in (1, 2, 7, 16, 33, 70):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, merkle.list_hasher(hashes[:size]))
            assert merkle.verify_inclusion(index, size, hashes[index], proof, roots[size])
    for old, new in itertools.combinations((1, 3, 8, 13, 32, 47, 70), 2):
        proof = merkle.consistency_proof(old, new, hash_range)
        assert merkle.verify_consistency(old, new, roots[old], roots[new], proof)
        assert not merkle.verify_consistency(old, new, roots[old], roots[new - 1], proof)

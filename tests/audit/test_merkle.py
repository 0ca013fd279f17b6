"""RFC 9162 Merkle trees: roots against the recursive definition, proofs property-tested."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    Tree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    prefix_root,
    root,
    verify_consistency,
    verify_inclusion,
)
from exchange.errors import InternalError


def reference_root(entries: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 defines it, recursively."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(
        b"\x01" + reference_root(entries[:k]) + reference_root(entries[k:])
    ).digest()


entries = st.lists(st.binary(max_size=24), min_size=1, max_size=70)


def flip(value: bytes, position: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= 0x01
    return bytes(data)


@given(st.lists(st.binary(max_size=16), max_size=80))
def test_root_matches_the_definition(items: list[bytes]) -> None:
    assert root([leaf_hash(e) for e in items]) == reference_root(items)


def test_known_shapes() -> None:
    assert root([]) == EMPTY_ROOT
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)


@settings(max_examples=200)
@given(entries, st.data())
def test_inclusion_proofs_verify_and_fail_on_any_altered_byte(
    items: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in items]
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(index, leaves)
    top = root(leaves)
    assert verify_inclusion(index, len(leaves), leaves[index], proof, top)
    position = data.draw(st.integers(0, 31))
    assert not verify_inclusion(index, len(leaves), flip(leaves[index], position), proof, top)
    assert not verify_inclusion(index, len(leaves), leaves[index], proof, flip(top, position))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        altered = [flip(p, position) if i == which else p for i, p in enumerate(proof)]
        assert not verify_inclusion(index, len(leaves), leaves[index], altered, top)
    if len(leaves) > 1:
        other = data.draw(st.integers(0, len(leaves) - 1).filter(lambda i: i != index))
        if leaves[other] != leaves[index]:
            assert not verify_inclusion(other, len(leaves), leaves[index], proof, top)


@settings(max_examples=200)
@given(entries, st.data())
def test_consistency_proofs_verify_and_fail_on_any_altered_byte(
    items: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in items]
    old = data.draw(st.integers(1, len(leaves)))
    proof = consistency_proof(old, leaves)
    old_root, new_root = root(leaves[:old]), root(leaves)
    assert verify_consistency(old, len(leaves), old_root, new_root, proof)
    position = data.draw(st.integers(0, 31))
    assert not verify_consistency(old, len(leaves), flip(old_root, position), new_root, proof)
    assert not verify_consistency(old, len(leaves), old_root, flip(new_root, position), proof)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        altered = [flip(p, position) if i == which else p for i, p in enumerate(proof)]
        assert not verify_consistency(old, len(leaves), old_root, new_root, altered)


@given(entries, st.data())
def test_rewritten_history_is_not_consistent(items: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in items]
    old = data.draw(st.integers(1, len(leaves)))
    changed = data.draw(st.integers(0, old - 1))
    rewritten = list(leaves)
    rewritten[changed] = leaf_hash(items[changed] + b"!")
    proof = consistency_proof(old, rewritten)
    assert not verify_consistency(old, len(leaves), root(leaves[:old]), root(rewritten), proof)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_growing_tree_answers_for_every_earlier_size(
    items: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in items]
    tree = Tree(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    assert tree.root(size) == root(leaves[:size])
    index = data.draw(st.integers(0, size - 1))
    assert verify_inclusion(
        index, size, leaves[index], tree.inclusion_proof(index, size), root(leaves[:size])
    )
    old = data.draw(st.integers(1, size))
    proof = tree.consistency_proof(old, size)
    assert verify_consistency(old, size, root(leaves[:old]), root(leaves[:size]), proof)


@settings(max_examples=60)
@given(st.integers(1, 140), st.integers(1, 4), st.data())
def test_a_tree_keeping_no_low_levels_answers_as_one_keeping_all(
    count: int, height: int, data: st.DataObject
) -> None:
    leaves = [leaf_hash(n.to_bytes(4, "big")) for n in range(count)]
    reads: list[tuple[int, int]] = []

    def read(lo: int, hi: int) -> list[bytes]:
        reads.append((lo, hi))
        return leaves[lo:hi]

    full, lean = Tree(leaves), Tree(leaves, height=height, read=read)
    assert lean.size == full.size == count
    assert lean.root() == full.root()
    assert reads == []  # the whole tree's root never reads
    assert sum(len(level) for level in lean.levels) <= 2 * 32 * count >> height
    size = data.draw(st.integers(1, count))
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert lean.root(size) == full.root(size)
    assert lean.inclusion_proof(index, size) == full.inclusion_proof(index, size)
    assert lean.consistency_proof(old, size) == full.consistency_proof(old, size)
    assert all(hi - lo == 1 << height for lo, hi in reads)  # whole blocks only


def test_a_block_that_cannot_be_read_back_is_an_error_not_a_wrong_proof() -> None:
    leaves = [leaf_hash(n.to_bytes(4, "big")) for n in range(64)]
    lean = Tree(leaves, height=3, read=lambda lo, hi: leaves[lo : hi - 1])
    with pytest.raises(InternalError):
        lean.inclusion_proof(5)


def test_an_inclusion_proof_pins_the_root_of_the_records_before_its_own() -> None:
    for size in range(1, 70):
        records = [str(n).encode() for n in range(size)]
        leaves = [leaf_hash(r) for r in records]
        for index in range(size):
            before = prefix_root(index, size, inclusion_proof(index, leaves))
            assert before == (reference_root(records[:index]) if index else None), (size, index)
    assert prefix_root(3, 8, [b"\0" * 32]) is None  # a path of the wrong length pins nothing

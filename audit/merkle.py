"""Merkle trees as in RFC 9162 (Certificate Transparency 2.0), section 2.1.

Leaves and interior nodes are hashed with different prefixes (0x00 and 0x01), so a leaf can
never pass for a node. The functions work on *leaf hashes* (``leaf_hash(entry)``), so callers
hash each entry once and keep the result.

- :func:`root` is MTH(D[n]);
- :func:`inclusion_proof` / :func:`verify_inclusion` are PATH(m, D[n]) and its check
  (section 2.1.3);
- :func:`consistency_proof` / :func:`verify_consistency` are PROOF(m, D[n]) and its check
  (section 2.1.4).

Verification needs nothing but the proof, the sizes and the roots; it never trusts the prover.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

from exchange.errors import InternalError

HASH_SIZE = 32  # SHA-256
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, computed bottom-up without recursion."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(
                level[-1]
            )  # an unpaired right edge is promoted, as the split rule implies
        level = paired
    return level[0]


class Tree:
    """A growing tree that keeps the roots of its complete subtrees, level by level.

    Appending is O(log n); the root of any prefix and the proofs below are O(log^2 n), because
    every range a proof needs is either a complete, aligned subtree (read from ``levels``) or the
    right edge of the tree (folded from a few of them). Each level is one contiguous buffer of
    32-byte hashes.

    With ``height`` h > 0 the levels below h are not kept: the leaves are grouped in blocks of
    2^h, only the leaves of the last, incomplete block are held, and a node inside a complete
    block is recomputed from its leaves, which ``read(lo, hi)`` returns (the audit log reads
    them from its records). A million leaves then take 2/2^h of 64 MB (h = 5: 2 MB) instead of
    64 MB, and a proof reads at most a block or two. The root of the whole tree never reads.
    Appends (one writer) and reads (any thread) may run at the same time.
    """

    def __init__(
        self,
        leaves: Sequence[bytes] = (),
        *,
        height: int = 0,
        read: Callable[[int, int], Sequence[bytes]] | None = None,
    ) -> None:
        if height and read is None:
            raise ValueError("a tree that keeps no leaves needs a way to read them")
        self.height = height
        self._read = read
        self.levels: list[bytearray] = [bytearray() for _ in range(height + 1)]
        self._tail: list[bytes] = []  # the leaves of the incomplete block (height > 0)
        self._size = 0
        self._lock = threading.Lock()
        self._blocks: dict[int, list[bytes]] = {}  # a few complete blocks' leaves, as read
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self._size

    def node(self, level: int, index: int) -> bytes:
        """The root of the complete, aligned subtree ``index`` at ``level``."""
        if level >= self.height:
            start = index * HASH_SIZE
            return bytes(self.levels[level][start : start + HASH_SIZE])
        lo = index << level
        block, offset = divmod(lo, 1 << self.height)
        with self._lock:
            complete = len(self.levels[self.height]) // HASH_SIZE
            if block >= complete:  # in the block still filling: its leaves are here
                return root(self._tail[offset : offset + (1 << level)])
        return root(self._block(block)[offset : offset + (1 << level)])

    def _block(self, block: int) -> list[bytes]:
        leaves = self._blocks.get(block)
        if leaves is None:
            if self._read is None:
                raise InternalError(f"block {block} of this tree is not held and cannot be read")
            span = 1 << self.height
            leaves = list(self._read(block * span, (block + 1) * span))
            if len(leaves) != span:
                raise InternalError(
                    f"audit records {block * span}-{(block + 1) * span - 1} are missing"
                )
            if len(self._blocks) >= 4:
                self._blocks.clear()
            self._blocks[block] = leaves
        return leaves

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf is a 32-byte hash")
        with self._lock:
            if self.height:
                self._tail.append(leaf)
                if len(self._tail) == 1 << self.height:
                    block, self._tail = root(self._tail), []
                    self._push(self.height, block)
            else:
                self._push(0, leaf)
            # Last: a reader that sees the new size finds every node below it in place.
            self._size += 1

    def _push(self, level: int, value: bytes) -> None:
        """Add a complete subtree's root at ``level`` and fold complete pairs upwards."""
        self.levels[level] += value
        index = len(self.levels[level]) // HASH_SIZE - 1
        while index % 2 == 1:
            parent = node_hash(self.node(level, index - 1), self.node(level, index))
            level += 1
            if len(self.levels) == level:
                self.levels.append(bytearray())
            self.levels[level] += parent
            index = len(self.levels[level]) // HASH_SIZE - 1

    def range_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for the ranges RFC 9162 proofs use."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        k = n.bit_length() - 1
        if n == 1 << k and lo % n == 0:
            return self.node(k, lo >> k)
        split = _split(n)
        return node_hash(self.range_root(lo, lo + split), self.range_root(lo + split, hi))

    def root(self, size: int | None = None) -> bytes:
        return self.range_root(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path of leaf ``index`` in the tree of ``size`` leaves."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"leaf {index} is outside a tree of size {size}")
        return [self.range_root(a, b) for a, b in reversed(_siblings(index, size))]

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[size]): the tree of the first ``old_size`` leaves is a prefix."""
        size = self.size if size is None else size
        if not 0 < old_size <= size <= self.size:
            raise ValueError(f"no consistency proof from size {old_size} to size {size}")
        return self._subproof(old_size, 0, size, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [self.range_root(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, whole), self.range_root(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.range_root(lo, lo + k)]


def _siblings(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose roots make up the audit path of leaf ``index``, from the top down."""
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo = lo + k
    return siblings


def prefix_root(index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """MTH(D[0:index]) from a verified audit path of leaf ``index`` in a tree of ``size``.

    The path's siblings left of the leaf are complete subtrees that cover the leaves before it,
    one for each bit of ``index``, so the root of the tree of the first ``index`` leaves follows
    from them: an inclusion proof also pins everything before its record. ``None`` for leaf 0
    or a path of the wrong length."""
    ranges = list(reversed(_siblings(index, size)))  # as the proof orders them: bottom up
    if index == 0 or len(ranges) != len(proof):
        return None
    left = [node for (lo, _), node in zip(ranges, proof, strict=True) if lo < index]
    folded = left[0]  # the smallest, rightmost; each larger one sits to its left
    for node in left[1:]:
        folded = node_hash(node, folded)
    return folded


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) over a list of leaf hashes."""
    return Tree(leaves).inclusion_proof(index)


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) over a list of leaf hashes."""
    return Tree(leaves).consistency_proof(old_size)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``leaf`` sit at ``index`` of the tree with ``expected_root``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
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
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?"""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    nodes = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
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
    return sn == 0 and fr == old_root and sr == new_root

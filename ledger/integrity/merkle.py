"""RFC 9162 Merkle tree: roots, proofs and their verification, with no storage attached.

Proof *generation* works on ranges of leaves: ``inclusion_path`` and ``consistency_path``
say which subtrees (``[start, end)``) a proof holds, following RFC 9162 §2.1.3.1 and
§2.1.4.1 literally; every such subtree is a fold of perfect, aligned subtrees
(``pieces``), which the store keeps by (level, index). So a proof reads O(log n) rows.
Proof *verification* is RFC 9162 §2.1.3.2 and §2.1.4.2, step by step: this is the code a
member library runs, so it checks every length and size before trusting a hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256

from ledger.integrity.hashing import HASH_SIZE, node_hash

Range = tuple[int, int]  # [start, end) of leaf indexes
Piece = tuple[int, int]  # (level, index): leaves [index << level, (index + 1) << level)


class InvalidProof(ValueError):
    """A proof does not prove what it claims; the message says which check failed."""


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 9162's k, for n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes: a right fold of the frontier (the empty tree per RFC)."""
    if not leaves:
        return sha256(b"").digest()
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


class Frontier:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves.

    One per set bit of ``size`` (level = the bit), largest on the left. Appending a
    leaf merges equal levels like a binary counter; each merge completes a node.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: dict[int, bytes] | None = None) -> None:
        self.size = size
        self.hashes = dict(hashes or {})
        expected = {level for level, _ in frontier_pieces(size)}
        if set(self.hashes) != expected:
            raise ValueError(f"a tree of {size} leaves has frontier levels {sorted(expected)}")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; return the interior nodes it completed as (level, index, hash)."""
        completed: list[tuple[int, int, bytes]] = []
        carry = leaf
        level = 0
        size = self.size
        hashes = self.hashes
        while size >> level & 1:
            carry = node_hash(hashes.pop(level), carry)
            level += 1
            completed.append((level, ((size + 1) >> level) - 1, carry))
        hashes[level] = carry
        self.size = size + 1
        return completed

    def root(self) -> bytes:
        if not self.size:
            return sha256(b"").digest()
        result: bytes | None = None
        for level in sorted(self.hashes):  # smallest subtree is the rightmost
            result = self.hashes[level] if result is None else node_hash(self.hashes[level], result)
        assert result is not None
        return result


def frontier_pieces(size: int) -> list[Piece]:
    """The perfect subtrees of a tree of ``size`` leaves, left to right."""
    return pieces(0, size)


def pieces(start: int, end: int) -> list[Piece]:
    """Split a subtree ``[start, end)`` of an RFC 9162 tree into perfect aligned subtrees.

    A subtree of n leaves in such a tree starts at a multiple of the smallest power of two
    ≥ n, so its binary decomposition, largest first, is aligned at every step.
    """
    out: list[Piece] = []
    position = start
    width = end - start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            if position % (1 << level):
                raise ValueError(f"[{start}, {end}) is not a subtree of an RFC 9162 tree")
            out.append((level, position >> level))
            position += 1 << level
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from its perfect pieces (left to right): a right fold."""
    result = hashes[-1]
    for value in reversed(hashes[:-1]):
        result = node_hash(value, result)
    return result


def inclusion_path(index: int, size: int) -> list[Range]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 as ranges, bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []

    def path(m: int, start: int, end: int) -> None:
        if end - start == 1:
            return
        k = split_point(end - start)
        if m < start + k:
            path(m, start, start + k)
            out.append((start + k, end))
        else:
            path(m, start + k, end)
            out.append((start, start + k))

    path(index, 0, size)
    return out


def consistency_path(old_size: int, new_size: int) -> list[Range]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 as ranges (empty when the sizes are equal)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    out: list[Range] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                out.append((start, end))
            return
        k = split_point(n)
        if m <= k:
            subproof(m, start, start + k, whole)
            out.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            out.append((start, start + k))

    subproof(old_size, 0, new_size, True)
    return out


def pieces_of(ranges: Iterable[Range]) -> set[Piece]:
    """Every perfect subtree a set of ranges needs: what to fetch in one query."""
    needed: set[Piece] = set()
    for start, end in ranges:
        needed.update(pieces(start, end))
    return needed


def assemble(ranges: Iterable[Range], perfect: Callable[[Piece], bytes]) -> list[bytes]:
    """A proof's hashes from the hashes of perfect subtrees."""
    return [fold([perfect(p) for p in pieces(start, end)]) for start, end in ranges]


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    for value in values:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise InvalidProof(f"{what} holds a value that is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises ``InvalidProof`` unless ``leaf`` is at ``leaf_index``
    in the tree of ``tree_size`` leaves whose root is ``root``."""
    _check_hashes([leaf, root, *proof], "the inclusion proof")
    if tree_size < 1:
        raise InvalidProof("a tree of size 0 holds no leaves")
    if not 0 <= leaf_index < tree_size:
        raise InvalidProof(f"leaf index {leaf_index} is not below the tree size {tree_size}")
    expected = len(inclusion_path(leaf_index, tree_size))
    if len(proof) != expected:
        raise InvalidProof(
            f"the proof has {len(proof)} hashes; leaf {leaf_index} of a tree of {tree_size}"
            f" needs {expected}"
        )
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("the proof is shorter than the path to the root")
    if r != root:
        raise InvalidProof("the proof leads to a different root: the leaf is not in this tree")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ``InvalidProof`` unless the tree of ``new_size`` leaves
    with ``new_root`` extends the tree of ``old_size`` leaves with ``old_root``."""
    _check_hashes([old_root, new_root, *proof], "the consistency proof")
    if old_size < 1:
        raise InvalidProof("a consistency proof starts from a tree of at least one leaf")
    if old_size > new_size:
        raise InvalidProof(f"the tree shrank from {old_size} to {new_size} leaves")
    if old_size == new_size:
        if proof:
            raise InvalidProof("two trees of the same size need an empty proof")
        if old_root != new_root:
            raise InvalidProof(f"two different roots for the same tree size {old_size}")
        return
    expected = len(consistency_path(old_size, new_size))
    if len(proof) != expected:
        raise InvalidProof(
            f"the proof has {len(proof)} hashes; from {old_size} to {new_size} needs {expected}"
        )
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("the proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("the proof is shorter than the path to the new root")
    if fr != old_root:
        raise InvalidProof("the proof does not lead to the old root: history was rewritten")
    if sr != new_root:
        raise InvalidProof("the proof does not lead to the new root")

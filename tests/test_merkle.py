"""The Merkle tree code against RFC 9162 written out independently, and against pymerkle.

Roots and inclusion paths must equal pymerkle's (a maintained RFC 6962/9162-hashing
library) for every size tried; consistency proofs must equal RFC 9162 §2.1.4.1's
definition, computed here by its recursive text over lists, and verify for pymerkle's
roots. Verifiers that accept forged proofs are a known failure of such systems, so every
kind of forgery is tried and must be refused.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from ledger.integrity.merkle import (
    Frontier,
    InvalidProof,
    assemble,
    consistency_path,
    fold,
    inclusion_path,
    pieces,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# ----------------------------------------------------------------- the reference


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over leaf hashes, literally."""
    if len(d) == 1:
        return d[0]
    k = ref_k(len(d))
    return ref_node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def leaves(n: int) -> list[bytes]:
    return [ref_leaf(f"event {i}".encode()) for i in range(n)]


def proof_from(d: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    """Our range-based proof assembled from perfect subtrees computed over the list."""
    return assemble(ranges, lambda p: ref_mth(d[p[1] << p[0] : (p[1] + 1) << p[0]]))


MAX = 70
PYMERKLE = InmemoryTree()
for i in range(MAX):
    PYMERKLE.append_entry(f"event {i}".encode())
D = leaves(MAX)


# ------------------------------------------------------------------- agreement


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_roots_and_inclusion_paths_equal_pymerkle_and_the_rfc(n: int) -> None:
    d = D[:n]
    assert root_of(d) == ref_mth(d) == PYMERKLE.get_root(n)
    for m in range(n):
        ours = proof_from(d, inclusion_path(m, n))
        assert ours == ref_path(m, d)
        theirs = PYMERKLE.prove_inclusion(m + 1, n).serialize()["path"]
        assert [bytes.fromhex(h) for h in theirs[1:]] == ours  # pymerkle starts with the leaf
        verify_inclusion(m, n, d[m], ours, PYMERKLE.get_root(n))


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_consistency_proofs_equal_the_rfc_and_verify_against_pymerkle_roots(n: int) -> None:
    d = D[:n]
    for m in range(1, n + 1):
        ours = proof_from(d, consistency_path(m, n))
        assert ours == ref_subproof(m, d, True)
        verify_consistency(m, n, PYMERKLE.get_root(m), PYMERKLE.get_root(n), ours)
        # pymerkle's own proof (its own layout) agrees that these roots are consistent.
        PYMERKLE.prove_consistency(m, n).verify(PYMERKLE.get_root(m), PYMERKLE.get_root(n))


@given(st.integers(1, 5000))
def test_frontier_root_equals_the_rfc_for_large_sizes(n: int) -> None:
    d = leaves(n)
    frontier = Frontier()
    completed = {}
    for leaf in d:
        for level, idx, value in frontier.append(leaf):
            completed[(level, idx)] = value
    assert frontier.root() == ref_mth(d)
    for (level, idx), value in list(completed.items())[:50]:
        assert value == ref_mth(d[idx << level : (idx + 1) << level])
    assert fold([ref_mth(d[i << lv : (i + 1) << lv]) for lv, i in pieces(0, n)]) == ref_mth(d)


def test_pieces_refuse_ranges_that_are_not_subtrees() -> None:
    with pytest.raises(ValueError):
        pieces(1, 3)


# ---------------------------------------------------------------------- forgery


def _flip(value: bytes, bit: int) -> bytes:
    raw = bytearray(value)
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return bytes(raw)


sizes = st.integers(2, MAX)


@given(sizes, st.data())
@settings(max_examples=300)
def test_forged_inclusion_proofs_are_refused(n: int, data: st.DataObject) -> None:
    d = D[:n]
    m = data.draw(st.integers(0, n - 1))
    root = ref_mth(d)
    proof = ref_path(m, d)
    verify_inclusion(m, n, d[m], proof, root)  # the genuine one passes
    forgery = data.draw(
        st.sampled_from(
            ["flip", "drop", "extra", "swap", "index", "size", "leaf", "root", "reorder"]
        )
    )
    index, size, leaf, forged = m, n, d[m], list(proof)
    if forgery == "flip":
        assume(forged)
        j = data.draw(st.integers(0, len(forged) - 1))
        forged[j] = _flip(forged[j], data.draw(st.integers(0, 255)))
    elif forgery == "drop":
        assume(forged)
        forged.pop(data.draw(st.integers(0, len(forged) - 1)))
    elif forgery == "extra":
        forged.insert(data.draw(st.integers(0, len(forged))), data.draw(st.sampled_from(d)))
    elif forgery == "swap":
        assume(len(forged) >= 2)
        j = data.draw(st.integers(0, len(forged) - 2))
        assume(forged[j] != forged[j + 1])
        forged[j], forged[j + 1] = forged[j + 1], forged[j]
    elif forgery == "index":
        index = data.draw(st.integers(0, n - 1).filter(lambda x: x != m))
        assume(d[index] != d[m])
    elif forgery == "size":  # the root is the genuine one of that size: sizes are signed with it
        size = data.draw(st.integers(m + 1, MAX).filter(lambda x: x != n))
        root = ref_mth(D[:size])
        assume(ref_path(m, D[:size]) != proof)
    elif forgery == "leaf":
        leaf = _flip(leaf, data.draw(st.integers(0, 255)))
    elif forgery == "root":
        root = _flip(root, data.draw(st.integers(0, 255)))
    else:
        assume(len(forged) >= 2)
        forged = forged[::-1]
        assume(forged != proof)
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf, forged, root)


@given(sizes, st.data())
@settings(max_examples=300)
def test_forged_consistency_proofs_are_refused(n: int, data: st.DataObject) -> None:
    d = D[:n]
    m = data.draw(st.integers(1, n - 1))
    old_root, new_root = ref_mth(d[:m]), ref_mth(d)
    proof = ref_subproof(m, d, True)
    verify_consistency(m, n, old_root, new_root, proof)
    forgery = data.draw(
        st.sampled_from(["flip", "drop", "extra", "swap", "old", "new", "sizes", "fork"])
    )
    first, second, forged = m, n, list(proof)
    if forgery == "flip":
        j = data.draw(st.integers(0, len(forged) - 1))
        forged[j] = _flip(forged[j], data.draw(st.integers(0, 255)))
    elif forgery == "drop":
        forged.pop(data.draw(st.integers(0, len(forged) - 1)))
    elif forgery == "extra":
        forged.insert(data.draw(st.integers(0, len(forged))), data.draw(st.sampled_from(d)))
    elif forgery == "swap":
        assume(len(forged) >= 2)
        j = data.draw(st.integers(0, len(forged) - 2))
        assume(forged[j] != forged[j + 1])
        forged[j], forged[j + 1] = forged[j + 1], forged[j]
    elif forgery == "old":
        old_root = _flip(old_root, data.draw(st.integers(0, 255)))
    elif forgery == "new":
        new_root = _flip(new_root, data.draw(st.integers(0, 255)))
    elif forgery == "sizes":  # genuine roots of the other sizes: sizes are signed with them
        first = data.draw(st.integers(1, MAX - 1))
        second = data.draw(st.integers(first + 1, MAX))
        assume((first, second) != (m, n))
        old_root, new_root = ref_mth(D[:first]), ref_mth(D[:second])
        assume(ref_subproof(first, D[:second], True) != proof)
    else:  # a forked history: one old leaf rewritten, the proof honestly computed from it
        j = data.draw(st.integers(0, m - 1))
        forked = list(d)
        forked[j] = ref_leaf(b"forged")
        new_root = ref_mth(forked)
        forged = ref_subproof(m, forked, True)
    with pytest.raises(InvalidProof):
        verify_consistency(first, second, old_root, new_root, forged)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: verify_inclusion(0, 0, D[0], [], D[0]), "size 0"),
        (lambda: verify_inclusion(3, 3, D[0], [], D[0]), "not below"),
        (lambda: verify_inclusion(0, 1, D[0][:31], [], D[0]), "32-byte"),
        (lambda: verify_consistency(0, 3, D[0], D[1], [D[2]]), "at least one leaf"),
        (lambda: verify_consistency(4, 3, D[0], D[1], [D[2]]), "shrank"),
        (lambda: verify_consistency(3, 3, D[0], D[0], [D[2]]), "empty proof"),
        (lambda: verify_consistency(3, 3, D[0], D[1], []), "different roots"),
    ],
)
def test_malformed_requests_get_a_specific_refusal(call, message: str) -> None:
    with pytest.raises(InvalidProof, match=message):
        call()


def test_equal_sizes_with_equal_roots_need_no_proof() -> None:
    verify_consistency(5, 5, D[0], D[0], [])

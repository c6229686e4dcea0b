"""The integrity tables' SQL (``migrations/0004.integrity.sql``): what the writer appends
with every save, and the O(log n) reads that proofs and checkpoints need.

Everything here takes a psycopg cursor or connection and returns plain values; the rules
(what a proof is, how a root is folded) live in ``merkle`` and ``hashing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ledger.integrity.hashing import GENESIS, EventFields, chain_hash, event_leaf_hash
from ledger.integrity.merkle import Frontier, Piece, frontier_pieces, root_of

#: Perfect subtrees from this level up are stored; below it a proof recomputes them from at
#: most 2**STORED_LEVEL leaf hashes (one index range read). 4 keeps merkle_nodes at n/8 rows
#: and costs a proof at most 15 extra hashes per low subtree.
STORED_LEVEL = 4
BLOCK = 1 << STORED_LEVEL

#: The chain's head and the tree's frontier, read under the writer's table lock, pipelined
#: with the INSERT (no extra round trip). Rows are (level, idx, hash): level -2 names the
#: ledger (for receipts); -1 is the head (idx = tree size, hash = chain hash); 0 the leaves
#: of the open block of 16; then the stored frontier nodes. The frontier is skipped when
#: the tree still has the size the writer knows (``known``: it made the last save itself).
HEAD_SQL = f"""
WITH head AS (
    SELECT leaf_index + 1 AS size, chain_hash FROM event_chain
    ORDER BY leaf_index DESC LIMIT 1
)
SELECT -2 AS level, 0::bigint AS idx, convert_to(ledger_id::text, 'UTF8') AS hash
    FROM ledger_identity
UNION ALL
SELECT -1, size, chain_hash FROM head
UNION ALL
SELECT 0, c.leaf_index, c.leaf_hash FROM head JOIN event_chain c
    ON c.leaf_index >= head.size - head.size %% {BLOCK} AND c.leaf_index < head.size
    WHERE head.size <> %(known)s
UNION ALL
SELECT n.level, n.idx, n.hash FROM head
    CROSS JOIN generate_series({STORED_LEVEL}, 62) AS k(level)
    JOIN merkle_nodes n ON n.level = k.level AND n.idx = (head.size >> k.level) - 1
    WHERE (head.size >> k.level) & 1 = 1 AND head.size <> %(known)s
"""

# Arrays sent in binary (%b): in text, psycopg escapes every bytea element with a regex,
# which cost more than everything else the chain adds to a save.
INSERT_CHAIN_SQL = (
    "INSERT INTO event_chain (leaf_index, notification_id, leaf_hash, chain_hash)"
    " SELECT * FROM unnest(%b::int8[], %b::int8[], %b::bytea[], %b::bytea[])"
)
INSERT_NODES_SQL = (
    "INSERT INTO merkle_nodes (level, idx, hash)"
    " SELECT * FROM unnest(%b::int2[], %b::int8[], %b::bytea[])"
)


@dataclass(frozen=True, slots=True)
class Leaf:
    """Where one stored event sits in the tree."""

    notification_id: int
    leaf_index: int
    leaf_hash: bytes


class StaleHead(Exception):
    """The tree has the size the writer knew, but not its chain head: read the frontier."""


@dataclass(frozen=True, slots=True)
class Head:
    """What a writer remembers of the tree it last extended."""

    size: int
    previous: bytes
    frontier: dict[int, bytes]


class ChainState:
    """The chain head and the tree frontier, as read under the lock (or remembered)."""

    def __init__(self, rows: Sequence[tuple[int, int, bytes]], known: Head | None = None) -> None:
        head = next(((idx, bytes(value)) for level, idx, value in rows if level == -1), None)
        if known is not None and head is not None and head[0] == known.size:
            if head[1] != known.previous:
                raise StaleHead(f"the chain head at {known.size} is not the one this writer made")
            self.previous = known.previous
            self.frontier = Frontier(known.size, known.frontier)
            return
        size, previous = 0, GENESIS
        leaves: dict[int, bytes] = {}
        nodes: dict[Piece, bytes] = {}
        for level, idx, value in rows:
            if level == -2:
                continue
            if level == -1:
                size, previous = idx, bytes(value)
            elif level == 0:
                leaves[idx] = bytes(value)
            else:
                nodes[(level, idx)] = bytes(value)
        hashes: dict[int, bytes] = {}
        for level, idx in frontier_pieces(size):
            if level >= STORED_LEVEL:
                hashes[level] = nodes[(level, idx)]
            else:
                hashes[level] = root_of(
                    [leaves[i] for i in range(idx << level, (idx + 1) << level)]
                )
        self.previous = previous
        self.frontier = Frontier(size, hashes)

    def head(self) -> Head:
        return Head(self.frontier.size, self.previous, dict(self.frontier.hashes))


def chain_new_events(
    curs: psycopg.Cursor[Any], state: ChainState, events: list[EventFields]
) -> list[Leaf]:
    """Hash the save's events onto the chain and the tree; queue the rows (same transaction).

    ``events`` must be in notification order; the caller holds the event table's lock.
    ``state`` ends at the new head.
    """
    frontier = state.frontier
    previous = state.previous
    first = frontier.size
    leaf_hashes: list[bytes] = []
    chain_hashes: list[bytes] = []
    node_levels: list[int] = []
    node_indexes: list[int] = []
    node_hashes: list[bytes] = []
    for event in events:
        leaf = event_leaf_hash(event)
        previous = chain_hash(previous, leaf)
        leaf_hashes.append(leaf)
        chain_hashes.append(previous)
        for level, idx, value in frontier.append(leaf):
            if level >= STORED_LEVEL:
                node_levels.append(level)
                node_indexes.append(idx)
                node_hashes.append(value)
    indexes = list(range(first, first + len(events)))
    ids = [e.notification_id for e in events]
    curs.execute(INSERT_CHAIN_SQL, (indexes, ids, leaf_hashes, chain_hashes), prepare=True)
    if node_levels:
        curs.execute(INSERT_NODES_SQL, (node_levels, node_indexes, node_hashes), prepare=True)
    state.previous = previous
    return [Leaf(n, i, h) for n, i, h in zip(ids, indexes, leaf_hashes, strict=True)]


# ------------------------------------------------------------------------------- reads


def ledger_id(conn: psycopg.Connection[Any]) -> str:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT ledger_id FROM ledger_identity").fetchone()
    if row is None:
        raise RuntimeError("ledger_identity is empty: run the migrations")
    return str(row[0])


def tree_size(conn: psycopg.Connection[Any]) -> int:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT leaf_index + 1 FROM event_chain ORDER BY leaf_index DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0


def leaves_for(conn: psycopg.Connection[Any], notification_ids: Iterable[int]) -> dict[int, Leaf]:
    """Leaf positions of stored events, by notification id (for receipts of retries)."""
    ids = list(notification_ids)
    if not ids:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT notification_id, leaf_index, leaf_hash FROM event_chain"
            " WHERE notification_id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {r[0]: Leaf(r[0], r[1], bytes(r[2])) for r in rows}


def perfect_hashes(conn: psycopg.Connection[Any], needed: Iterable[Piece]) -> dict[Piece, bytes]:
    """Hashes of perfect subtrees: stored ones read by key, small ones from their leaves.

    One statement, O(log n) rows for any proof's worth of pieces.
    """
    wanted = set(needed)
    high = [p for p in wanted if p[0] >= STORED_LEVEL]
    low = [p for p in wanted if p[0] < STORED_LEVEL]
    leaf_ids = sorted({i for level, idx in low for i in range(idx << level, (idx + 1) << level)})
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT n.level, n.idx, n.hash FROM merkle_nodes n"
            " JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, idx)"
            " ON n.level = w.level AND n.idx = w.idx"
            " UNION ALL"
            " SELECT 0, leaf_index, leaf_hash FROM event_chain WHERE leaf_index = ANY(%s)",
            ([p[0] for p in high], [p[1] for p in high], leaf_ids),
            prepare=True,
        ).fetchall()
    found: dict[Piece, bytes] = {}
    leaves: dict[int, bytes] = {}
    for level, idx, value in rows:
        if level == 0:
            leaves[idx] = bytes(value)
        else:
            found[(level, idx)] = bytes(value)
    for level, idx in low:
        span = range(idx << level, (idx + 1) << level)
        if all(i in leaves for i in span):
            found[(level, idx)] = root_of([leaves[i] for i in span])
    missing = wanted - found.keys()
    if missing:
        raise LookupError(f"the tree is missing subtrees {sorted(missing)[:5]}")
    return found

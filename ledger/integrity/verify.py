"""``tongjie verify``: recompute the chain and the tree over the whole store.

One pass in notification order, in one read-only snapshot, streaming three server-side
cursors side by side (events, chain rows, stored Merkle nodes): each event's leaf hash is
recomputed from its columns and compared with the one written at append time, the chain is
re-folded, every stored node is rebuilt, and the root at every signed checkpoint (and at
any checkpoint a witness kept) is compared with the signed root. The first difference is
reported with its position, its item and what differs.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import tuple_row

from ledger.eventlog import (
    RAW_EVENTS_SQL,
    first_stored,
    neighbour_times,
    raw_event,
    raw_event_cursor,
    versions,
)
from ledger.integrity.checkpoints import BadSignature, Checkpoint
from ledger.integrity.hashing import GENESIS, LAYOUT_VERSION, from_microseconds
from ledger.integrity.merkle import fold
from ledger.integrity.tables import STORED_LEVEL, ledger_id

#: Rows per round trip of each server-side cursor: large enough that fetching costs little
#: next to hashing, small enough to keep a few MB in memory.
BATCH = 5_000
#: How many leaves on either side a reordered event's content is looked for.
REORDER_WINDOW = 64

_HEAD = struct.Struct(">BQ16sqqI")
# The leaf prefix 0x00 and the layout version packed in one go, for the hot loop.
_LEAF_HEAD = struct.Struct(">BBQ16sqqI")
_LENGTH = struct.Struct(">I")

CHAIN_SQL = (
    "SELECT leaf_index, notification_id, leaf_hash, chain_hash FROM event_chain ORDER BY leaf_index"
)
# In the order appending leaves completes them: by the last leaf covered, then level.
NODES_SQL = "SELECT level, idx, hash FROM merkle_nodes ORDER BY (idx + 1) << level, level"


def stream(cur: psycopg.ServerCursor[Any], sql: str, batch: int = BATCH) -> Iterator[Any]:
    cur.itersize = batch
    cur.execute(sql)
    while rows := cur.fetchmany(batch):
        yield from rows


@dataclass
class Mismatch:
    kind: str  # content | chain | missing-event | unchained-event | leaf-order | node | checkpoint
    detail: str
    position: int | None = None  # notification id
    leaf_index: int | None = None
    item: str | None = None

    def describe(self) -> str:
        where = []
        if self.position is not None:
            where.append(f"position {self.position}")
        if self.leaf_index is not None:
            where.append(f"leaf {self.leaf_index}")
        if self.item:
            where.append(self.item)
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{self.kind}: {prefix}{self.detail}"


@dataclass
class Report:
    events: int = 0
    root: bytes | None = None
    checkpoints: int = 0
    nodes: int = 0
    seconds: float = 0.0
    mismatch: Mismatch | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


@dataclass
class _Trusted:
    checkpoint: Checkpoint
    source: str


def verify_store(
    dsn: str,
    *,
    external: Sequence[tuple[Checkpoint, str]] = (),
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check every stored event, chain row, Merkle node and checkpoint; stop at the first
    difference. ``external``: checkpoints kept elsewhere (a witness's), with their source."""
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            report = _verify(conn, external, progress)
    report.seconds = time.perf_counter() - started
    return report


def _verify(
    conn: psycopg.Connection[Any],
    external: Sequence[tuple[Checkpoint, str]],
    progress: Callable[[int], None] | None,
) -> Report:
    from ledger.integrity.service import _CHECKPOINT_COLUMNS, _checkpoint

    report = Report()
    with conn.cursor(row_factory=tuple_row) as cur:
        ledger = ledger_id(conn)
        stored = [_checkpoint(r) for r in cur.execute(_CHECKPOINT_COLUMNS).fetchall()]
    trusted = [_Trusted(c, "signed checkpoint") for c in stored]
    trusted += [_Trusted(c, source) for c, source in external]
    for t in trusted:
        if t.checkpoint.ledger != ledger:
            report.mismatch = Mismatch(
                "checkpoint",
                f"the {t.source} at size {t.checkpoint.tree_size} is from ledger"
                f" {t.checkpoint.ledger}, this store is ledger {ledger}",
            )
            return report
        try:
            t.checkpoint.verify_signature()
        except BadSignature as error:
            report.mismatch = Mismatch("checkpoint", f"the {t.source}: {error}")
            return report
    trusted.sort(key=lambda t: t.checkpoint.tree_size)
    report.checkpoints = len(trusted)

    events = stream(raw_event_cursor(conn, "verify_events"), RAW_EVENTS_SQL)
    chain = stream(conn.cursor("verify_chain", binary=True, row_factory=tuple_row), CHAIN_SQL)
    nodes = stream(conn.cursor("verify_nodes", binary=True, row_factory=tuple_row), NODES_SQL)
    mismatch, count, stack, stored_nodes = _walk(events, chain, nodes, trusted, progress)
    report.events = count
    report.nodes = stored_nodes
    report.root = fold(stack) if stack else None
    if mismatch is not None:
        report.mismatch = _explain(conn, mismatch)
    return report


def _walk(
    events: Iterator[Any],
    chain: Iterator[Any],
    nodes: Iterator[Any],
    trusted: list[_Trusted],
    progress: Callable[[int], None] | None,
) -> tuple[Mismatch | None, int, list[bytes], int]:
    """The hot loop: about a microsecond of Python per hash, nothing else per event."""
    head_pack = _LEAF_HEAD.pack
    length_pack = _LENGTH.pack
    sha = sha256
    join = b"".join
    stack: list[bytes] = []
    previous = GENESIS
    checks = iter(trusted)
    check = next(checks, None)
    check_at = check.checkpoint.tree_size if check is not None else -1
    next_node = next(nodes, None)
    node_count = 0
    i = 0
    c = next(chain, None)
    for nid, oid, version, micros, topic, state in events:
        if c is None or c[1] != nid:
            return _misaligned(i, nid, c, oid), i, stack, node_count
        if c[0] != i:
            return (
                Mismatch(
                    "leaf-order",
                    f"the chain row of this event says leaf {c[0]}; leaves are dense, so"
                    f" chain rows before it were removed or renumbered",
                    nid,
                    i,
                ),
                i,
                stack,
                node_count,
            )
        leaf = sha(
            join(
                (
                    head_pack(0, LAYOUT_VERSION, nid, oid, version, micros, len(topic)),
                    topic,
                    length_pack(len(state)),
                    state,
                )
            )
        ).digest()
        if leaf != c[2]:
            if sha256(b"\x02" + previous + c[2]).digest() != c[3]:
                return (
                    Mismatch(
                        "chain",
                        "the chain row's leaf hash was altered: it matches neither the event"
                        " nor the chain hash stored beside it",
                        nid,
                        i,
                    ),
                    i,
                    stack,
                    node_count,
                )
            return Mismatch("content", "", nid, i, oid.hex()), i, stack, node_count
        previous = sha(b"\x02" + previous + leaf).digest()
        if previous != c[3]:
            return (
                Mismatch(
                    "chain",
                    "the event matches its leaf hash but the stored chain hash is not"
                    " SHA-256(0x02 ‖ previous chain hash ‖ leaf hash): the chain row was altered",
                    nid,
                    i,
                ),
                i,
                stack,
                node_count,
            )
        carry = leaf
        j = i
        level = 0
        while j & 1:
            carry = sha(b"\x01" + stack.pop() + carry).digest()
            j >>= 1
            level += 1
            if level >= STORED_LEVEL:
                key = (level, ((i + 1) >> level) - 1)
                if next_node is None or (next_node[0], next_node[1]) != key:
                    return _node_mismatch(key, next_node, "missing"), i, stack, node_count
                if bytes(next_node[2]) != carry:
                    return _node_mismatch(key, next_node, "differs"), i, stack, node_count
                node_count += 1
                next_node = next(nodes, None)
        stack.append(carry)
        i += 1
        c = next(chain, None)
        while i == check_at and check is not None:
            if fold(stack) != check.checkpoint.root_hash:
                return (
                    Mismatch(
                        "checkpoint",
                        f"the tree of the first {i} events does not have the root the"
                        f" {check.source} at size {i} signed: history before it was rewritten"
                        " and its hashes recomputed" + _since(trusted, i),
                    ),
                    i,
                    stack,
                    node_count,
                )
            check = next(checks, None)
            check_at = check.checkpoint.tree_size if check is not None else -1
        if not i & 0xFFFF and progress is not None:
            progress(65_536)
    if progress is not None:
        progress(i % 65_536)
    if c is not None:
        return (
            Mismatch(
                "missing-event",
                "the chain records an event here that the store no longer holds: it was deleted",
                c[1],
                c[0],
            ),
            i,
            stack,
            node_count,
        )
    if next_node is not None:
        return (
            _node_mismatch((next_node[0], next_node[1]), next_node, "extra"),
            i,
            stack,
            node_count,
        )
    if check is not None:
        return (
            Mismatch(
                "checkpoint",
                f"the {check.source} signs {check.checkpoint.tree_size} events but the store"
                f" holds {i}: events were removed",
            ),
            i,
            stack,
            node_count,
        )
    return None, i, stack, node_count


def _since(trusted: list[_Trusted], size: int) -> str:
    earlier = [t.checkpoint.tree_size for t in trusted if t.checkpoint.tree_size < size]
    return (
        f" (after leaf {max(earlier) - 1}, which the checkpoint at {max(earlier)} covers)"
        if earlier
        else ""
    )


def _misaligned(i: int, nid: int, c: Any, oid: bytes) -> Mismatch:
    if c is None or c[1] > nid:
        return Mismatch(
            "unchained-event",
            "this event has no chain row: it was not recorded through the ledger"
            " (inserted into the table directly)",
            nid,
            None,
            oid.hex(),
        )
    return Mismatch(
        "missing-event",
        "the chain records an event here that the store no longer holds: it was deleted"
        " (or its position was changed)",
        c[1],
        c[0],
    )


def _node_mismatch(key: tuple[int, int], stored: Any, how: str) -> Mismatch:
    level, idx = key
    span = f"leaves {idx << level}–{((idx + 1) << level) - 1}"
    if how == "missing":
        found = "none" if stored is None else f"({stored[0]}, {stored[1]})"
        detail = f"Merkle node (level {level}, index {idx}) over {span} is missing (next: {found})"
    elif how == "differs":
        detail = f"Merkle node (level {level}, index {idx}) over {span} has the wrong hash"
    else:
        detail = f"Merkle node (level {level}, index {idx}) is stored but covers no stored leaves"
    return Mismatch("node", detail, None, idx << level)


# ------------------------------------------------------------------- diagnosis


def _explain(conn: psycopg.Connection[Any], m: Mismatch) -> Mismatch:
    """Say what differs and which item it is, reading only around the bad event."""
    if m.position is None:
        return m
    row = raw_event(conn, m.position)
    if row is None:
        return m
    oid = row[1]
    m.item = _item(conn, oid)
    if m.kind == "content":
        m.detail = _content_difference(conn, m, row)
    return m


def _item(conn: psycopg.Connection[Any], oid: bytes) -> str:
    """owner/barcode for an item's event; otherwise the aggregate's kind and id."""
    from uuid import UUID

    originator = UUID(bytes=oid)
    first = first_stored(conn, originator)
    if first is None:
        return f"aggregate {originator}"
    topic, state = first
    try:
        data = json.loads(bytes(state))
    except ValueError:
        data = {}
    if ":Item." in topic and isinstance(data, dict) and "owner" in data and "barcode" in data:
        return f"item {data['owner']}/{data['barcode']}"
    kind = topic.split(":")[-1].split(".")[0]
    return f"{kind.lower()} {originator}"


def _content_difference(conn: psycopg.Connection[Any], m: Mismatch, row: tuple[Any, ...]) -> str:
    nid, oid, version, micros, topic, state = row
    base = (
        "the stored event no longer hashes to the leaf recorded when it was appended: its"
        " originator id, version, topic, state or time was changed"
    )
    # Reordered (positions swapped) or moved: its content hashes to a neighbour's leaf.
    with conn.cursor(row_factory=tuple_row) as cur:
        near = cur.execute(
            "SELECT leaf_index, notification_id, leaf_hash FROM event_chain"
            " WHERE leaf_index BETWEEN %s AND %s",
            (m.leaf_index - REORDER_WINDOW, m.leaf_index + REORDER_WINDOW),
        ).fetchall()
    for leaf_index, other, stored in near:
        data = (
            _HEAD.pack(LAYOUT_VERSION, other, oid, version, micros, len(topic))
            + topic
            + _LENGTH.pack(len(state))
            + state
        )
        if other != nid and sha256(b"\x00" + data).digest() == bytes(stored):
            return (
                f"this content was recorded at position {other} (leaf {leaf_index}): events"
                " were reordered or renumbered"
            )
    clues = []
    times = neighbour_times(conn, nid)
    stored_versions = versions(conn, _uuid(oid))
    moment = from_microseconds(micros)
    before, after = times if times else (None, None)
    if (before is not None and moment < before) or (after is not None and moment > after):
        clues.append(f"recorded_at ({moment.isoformat()}) is out of order with its neighbours")
    if stored_versions != list(range(1, len(stored_versions) + 1)):
        clues.append(f"the aggregate's versions are {stored_versions[:8]}…, not 1, 2, 3, …")
    try:
        json.loads(state)
    except ValueError:
        clues.append("the state is not valid JSON")
    try:
        from eventsourcing.utils import resolve_topic

        resolve_topic(topic.decode())
    except Exception:
        clues.append(f"the topic {topic.decode()!r} names no event class")
    return base + (f" — {'; '.join(clues)}" if clues else "")


def _uuid(raw: bytes) -> Any:
    from uuid import UUID

    return UUID(bytes=raw)

"""The hash chain and the Merkle tree are written with the events, in notification order.

Each event's hashes are recomputed here from the stored columns with ``hashlib`` and the
byte layout as the README states it (not through the code under test), and compared.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import item_id
from ledger.domain.errors import ItemNotAvailable
from ledger.integrity.hashing import EventFields, event_leaf_hash, leaf_data, parse_leaf_data
from ledger.integrity.merkle import root_of
from ledger.integrity.service import Integrity, dsn_connect
from ledger.integrity.verify import verify_store
from ledger.write.recorder import LedgerRecorder
from tests.conftest import open_ledger
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    count_events,
    desk,
    join_all,
    register_item,
    register_reader,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    join_all(ledger)
    yield ledger


def circulate(app: Circulation, barcodes: int = 6) -> None:
    reader = register_reader(app, 1)
    for n in range(barcodes):
        register_item(app, CHENGDU, f"B{n}")
    for n in range(barcodes):
        app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode=f"B{n}",
                library=CHENGDU,
                reader_id=reader,
                actor=desk(CHENGDU),
            )
        )
        app.execute(
            c.Return(owner=CHENGDU, barcode=f"B{n}", library=JINJIANG, actor=desk(JINJIANG))
        )


def readme_leaf(row: tuple) -> bytes:
    """The README's layout, written out again: what a member library would write."""
    nid, oid, version, recorded_at, topic, state = row
    micros = (recorded_at - EPOCH) // timedelta(microseconds=1)
    topic_bytes = topic.encode("utf-8")
    data = (
        b"\x01"
        + nid.to_bytes(8, "big")
        + oid.bytes
        + version.to_bytes(8, "big", signed=True)
        + micros.to_bytes(8, "big", signed=True)
        + len(topic_bytes).to_bytes(4, "big")
        + topic_bytes
        + len(state).to_bytes(4, "big")
        + bytes(state)
    )
    return hashlib.sha256(b"\x00" + data).digest()


def stored(dsn: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(dsn) as conn:
        events = conn.execute(
            "SELECT notification_id, originator_id, originator_version, recorded_at, topic, state"
            " FROM circulation_events ORDER BY notification_id"
        ).fetchall()
        chain = conn.execute(
            "SELECT leaf_index, notification_id, leaf_hash, chain_hash FROM event_chain"
            " ORDER BY leaf_index"
        ).fetchall()
    return events, chain


def test_every_event_is_chained_in_notification_order(app: Circulation, dsn: str) -> None:
    circulate(app)
    events, chain = stored(dsn)
    assert len(events) == len(chain) == count_events(dsn) > 30
    previous = bytes(32)
    for index, (event, row) in enumerate(zip(events, chain, strict=True)):
        leaf_index, nid, leaf, chain_hash = row
        assert (leaf_index, nid) == (index, event[0])
        assert bytes(leaf) == readme_leaf(event)
        previous = hashlib.sha256(b"\x02" + previous + bytes(leaf)).digest()
        assert bytes(chain_hash) == previous
    with psycopg.connect(dsn) as conn:
        nodes = conn.execute("SELECT level, idx, hash FROM merkle_nodes").fetchall()
    leaves = [bytes(r[2]) for r in chain]
    assert nodes, "a tree of more than 16 leaves stores nodes"
    for level, idx, value in nodes:
        assert level >= 4
        assert bytes(value) == root_of(leaves[idx << level : (idx + 1) << level])
    assert Integrity(dsn_connect(dsn)).root(len(leaves)) == root_of(leaves)


def test_leaf_layout_round_trips() -> None:
    from uuid import uuid4

    event = EventFields(
        7,
        uuid4(),
        3,
        datetime(2024, 5, 1, 8, 30, 0, 123456, tzinfo=UTC),
        "ledger.domain.items:Item.Borrowed",
        b'{"a": 1}',
    )
    data = leaf_data(event)
    assert parse_leaf_data(data) == event
    assert len(data) == 1 + 8 + 16 + 8 + 8 + 4 + len(event.topic) + 4 + len(event.state)
    assert struct.unpack(">q", data[33:41])[0] == 1714552200123456
    assert event_leaf_hash(event) == hashlib.sha256(b"\x00" + data).digest()


def test_receipts_name_the_ledger_positions_leaves_and_hashes(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "R1")
    reader = register_reader(app, 2)
    result = app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="R1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            command_id="borrow-r1",
        )
    )
    receipt = result.receipt
    assert receipt is not None
    _, chain = stored(dsn)
    by_position = {row[1]: row for row in chain}
    assert [e.position for e in receipt.events] == list(result.notification_ids)
    assert len(receipt.events) == 2  # Item.Borrowed and Reader.LoanOpened
    for entry in receipt.events:
        leaf_index, _, leaf, _ = by_position[entry.position]
        assert (entry.leaf_index, entry.leaf_hash) == (leaf_index, bytes(leaf))
    with psycopg.connect(dsn) as conn:
        ledger_id = str(conn.execute("SELECT ledger_id FROM ledger_identity").fetchone()[0])
    assert receipt.ledger == ledger_id
    again = app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="R1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            command_id="borrow-r1",
        )
    )
    assert again.replayed
    assert again.receipt == receipt  # a retry answers the same receipt
    assert again.receipt.as_dict() == receipt.as_dict()


def test_a_refused_command_chains_nothing(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "X1")
    reader = register_reader(app, 3)
    app.execute(
        c.Borrow(
            owner=CHENGDU, barcode="X1", library=CHENGDU, reader_id=reader, actor=desk(CHENGDU)
        )
    )
    before = stored(dsn)
    with pytest.raises(ItemNotAvailable):
        app.execute(
            c.Borrow(
                owner=CHENGDU, barcode="X1", library=CHENGDU, reader_id=reader, actor=desk(CHENGDU)
            )
        )
    assert stored(dsn) == before


def test_writers_in_separate_pools_keep_one_chain(dsn: str) -> None:
    """Two writers with their own connections take turns under the table lock: the chain
    still follows notification order exactly."""
    first = open_ledger(dsn)
    second = open_ledger(dsn)
    try:
        join_all(first)
        errors: list[BaseException] = []

        def register(app: Circulation, prefix: str) -> None:
            try:
                for n in range(40):
                    app.execute(
                        c.RegisterItem(owner=CHENGDU, barcode=f"{prefix}{n}", actor=desk(CHENGDU))
                    )
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=register, args=(app, prefix))
            for app, prefix in ((first, "P"), (second, "Q"), (first, "S"), (second, "T"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
    finally:
        first.close()
        second.close()
    events, chain = stored(dsn)
    assert [r[1] for r in chain] == [e[0] for e in events]
    assert [r[0] for r in chain] == list(range(len(events)))
    report = verify_store(dsn)
    assert report.ok, report.mismatch
    assert report.events == len(events)


def test_notification_id_gaps_do_not_leave_gaps_in_the_tree(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "G1")
    with psycopg.connect(dsn) as conn:  # a rolled-back save uses ids up
        conn.execute("SELECT nextval('circulation_events_notification_id_seq')")
        conn.execute("SELECT nextval('circulation_events_notification_id_seq')")
    register_item(app, CHENGDU, "G2")
    events, chain = stored(dsn)
    ids = [e[0] for e in events]
    assert any(b - a > 1 for a, b in itertools.pairwise(ids))
    assert [r[0] for r in chain] == list(range(len(ids)))
    assert verify_store(dsn).ok


def test_the_migrations_sql_chain_equals_the_writers(dsn: str) -> None:
    """migrations/0004 seals a history recorded before it with SQL; the result must be the
    same bytes the writer computes in Python. Write with the chain off, chain in SQL, verify."""
    app = open_ledger(dsn)
    try:
        join_all(app, [CHENGDU])
        LedgerRecorder.chain_events = False
        try:
            for n in range(40):
                register_item(app, CHENGDU, f"S{n}")
        finally:
            LedgerRecorder.chain_events = True
        unchained = verify_store(dsn)
        assert unchained.mismatch is not None
        assert unchained.mismatch.kind == "unchained-event"
        with psycopg.connect(dsn) as conn:
            chained = conn.execute("SELECT chain_unchained_events()").fetchone()[0]
        assert chained == 40
        for n in range(5):  # the writer carries on from the SQL-written frontier
            register_item(app, CHENGDU, f"T{n}")
    finally:
        app.close()
    report = verify_store(dsn)
    assert report.ok, report.mismatch
    events, chain = stored(dsn)
    assert [bytes(r[2]) for r in chain] == [readme_leaf(e) for e in events]


def test_verify_finds_a_clean_history_clean(app: Circulation, dsn: str) -> None:
    circulate(app, 3)
    report = verify_store(dsn)
    assert report.ok
    assert report.events == count_events(dsn)
    _, chain = stored(dsn)
    assert report.root == root_of([bytes(r[2]) for r in chain])
    assert app.load([item_id(CHENGDU, "B0")])[item_id(CHENGDU, "B0")] is not None


def test_a_writer_rereads_the_head_when_the_chain_is_not_the_one_it_made(dsn: str) -> None:
    """A writer remembers the frontier it left, for as long as the tree keeps that size;
    a chain rebuilt under it (same size, other head) is read again, never overwritten."""
    app = open_ledger(dsn)
    try:
        join_all(app, [CHENGDU])
        for n in range(20):
            register_item(app, CHENGDU, f"K{n}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                "UPDATE circulation_events SET state = state || '\\x20'::bytea"
                " WHERE notification_id = (SELECT min(notification_id) FROM circulation_events)"
            )
            conn.execute("DELETE FROM merkle_nodes")
            conn.execute("DELETE FROM event_chain")
            conn.execute("SELECT chain_unchained_events()")
        for n in range(20, 25):
            register_item(app, CHENGDU, f"K{n}")
    finally:
        app.close()
    report = verify_store(dsn)
    assert report.ok, report.mismatch  # the new events extend the rebuilt chain, as stored

"""A valid history of a million events verifies, through the real recorder.

The events are written by ``LedgerRecorder.insert_events`` in saves of 1,000 (the path
every command takes, chain included); their content is a real domain event's, with a
fresh originator each. Then ``verify`` recomputes every leaf, the chain, every stored node
and the root at a checkpoint, and one old event is proved included against it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import psycopg

from ledger.domain.items import Item
from ledger.eventlog import MAPPER
from ledger.integrity.checkpoints import private_key
from ledger.integrity.proofs import check_receipt
from ledger.integrity.receipts import Receipt, ReceiptEntry
from ledger.integrity.service import Integrity, dsn_connect
from ledger.integrity.tables import STORED_LEVEL
from ledger.integrity.verify import verify_store
from ledger.write.work import WriteSet
from tests.conftest import open_ledger

EVENTS = 1_000_000
#: Events per save. psycopg's pipeline mode can deadlock when one save sends more than
#: about 600 kB (psycopg issue #685); 1,000 of these events stay well under that.
SAVE = 1_000


def test_a_million_events_verify(dsn: str) -> None:
    app = open_ledger(dsn, group_commit=False)
    try:
        template = Item.register(
            uuid4(),
            owner="SC-510100",
            barcode="510100000001",
            title="三体",
            isbn=None,
            occurred_at=datetime.now(UTC),
            library="SC-510100",
            recorded_by="key:bulk",
            command_id="c",
        )
        stored = MAPPER.to_stored_event(template.collect_events()[0])
        last = None
        for _ in range(EVENTS // SAVE):
            batch = [type(stored)(uuid4(), 1, stored.topic, stored.state) for _ in range(SAVE)]
            write_set = WriteSet()
            app.uow.store.recorder.insert_events(batch, write_set=write_set)
            last = write_set
    finally:
        app.close()
    assert last is not None and last.leaves[-1].leaf_index == EVENTS - 1

    integrity = Integrity(dsn_connect(dsn), private_key(bytes(range(32))))
    checkpoint, _ = integrity.make_checkpoint()
    assert checkpoint.tree_size == EVENTS

    report = verify_store(dsn)
    assert report.ok, report.mismatch
    assert report.events == EVENTS
    assert report.root == checkpoint.root_hash
    with psycopg.connect(dsn) as conn:
        nodes = conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0]
    assert report.nodes == nodes == sum(EVENTS >> level for level in range(STORED_LEVEL, 21))

    with psycopg.connect(dsn) as conn:
        position, leaf = conn.execute(
            "SELECT notification_id, leaf_hash FROM event_chain WHERE leaf_index = 123456"
        ).fetchone()
    receipt = Receipt(checkpoint.ledger, (ReceiptEntry(position, 123456, bytes(leaf)),))
    proof = integrity.inclusion_proof(position)
    assert len(proof.path) == 20  # ⌈log2 1,000,000⌉
    check_receipt(receipt, proof, checkpoint)

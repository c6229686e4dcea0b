"""The evidence file: the whole timeline, who recorded what when, who provably held the copy."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.disputes.evidence import LATE_UPLOAD, build, render_html
from ledger.domain.errors import UnknownDispute
from ledger.eventlog import EventLog
from tests.helpers import CHENGDU, YUZHONG, desk, join_all, now, register_item, register_reader


@pytest.fixture
def case(ledger: Circulation) -> tuple[Circulation, UUID, UUID]:
    """Lent at Chengdu, returned at Yuzhong (uploaded three days late), shipped home,
    disputed by Chengdu as never received."""
    join_all(ledger)
    register_item(ledger, CHENGDU, "E1", title="平凡的世界")
    reader = register_reader(ledger, 1)
    start = now() - timedelta(days=30)
    ledger.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="E1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=start,
        )
    )
    ledger.execute(
        c.Return(
            owner=CHENGDU,
            barcode="E1",
            library=YUZHONG,
            actor=desk(YUZHONG),
            occurred_at=now() - timedelta(days=3),
        )
    )
    transfer = ledger.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode="E1",
            library=YUZHONG,
            to_library=CHENGDU,
            actor=desk(YUZHONG),
        )
    ).outcome["transfer_id"]
    dispute = ledger.execute(
        c.OpenDispute(
            owner=CHENGDU,
            barcode="E1",
            kind="not_received",
            other_party=YUZHONG,
            statement="never arrived",
            library=CHENGDU,
            actor=desk(CHENGDU),
        )
    ).outcome["dispute_id"]
    return ledger, UUID(dispute), UUID(transfer)


def test_timeline_names_desks_keys_times_and_holders(case) -> None:
    ledger, dispute_id, _ = case
    evidence = build(EventLog(ledger.pool), dispute_id)
    timeline = evidence["timeline"]
    assert [t["event"] for t in timeline] == [
        "Registered",
        "Borrowed",
        "Returned",
        "TransferDispatched",
    ]
    assert [t["library"] for t in timeline] == [CHENGDU, CHENGDU, YUZHONG, YUZHONG]
    assert [t["recorded_by"] for t in timeline] == [f"key:{CHENGDU}"] * 2 + [f"key:{YUZHONG}"] * 2
    # physically: on Chengdu's shelf, with a reader, on Yuzhong's shelf, on the road
    assert [t["physically_at"] for t in timeline] == [CHENGDU, None, YUZHONG, None]
    assert [t["custodian"] for t in timeline] == [CHENGDU, CHENGDU, YUZHONG, YUZHONG]
    assert timeline[3]["where"] == f"in transit {YUZHONG} → {CHENGDU}"
    # the borrow and the return were uploaded long after they happened; the rest at once
    assert [t["late_upload"] for t in timeline] == [False, True, True, False]
    assert timeline[1]["recorded_after_seconds"] > LATE_UPLOAD.total_seconds()
    assert evidence["late_uploads"] == 2
    assert not any(t["recorded_after_dispute_opened"] for t in timeline)
    holder = evidence["last_provable_holder"]
    assert holder["library"] == YUZHONG and holder["event"] == "TransferDispatched"
    assert holder["recorded_by"] == f"key:{YUZHONG}"
    assert "dispatched" in holder["why"]
    assert evidence["dispute"]["opened_by"] == CHENGDU
    assert evidence["dispute"]["events"][0]["details"]["statement"] == "never arrived"
    assert evidence["item"]["title"] == "平凡的世界"


def test_events_recorded_after_the_opening_stand_out(case) -> None:
    ledger, dispute_id, transfer = case
    # the receipt turns up, backdated, after the dispute was opened
    ledger.execute(
        c.Receive(
            transfer_id=transfer,
            library=CHENGDU,
            actor=desk(CHENGDU),
            occurred_at=now() - timedelta(days=2),
        )
    )
    evidence = build(EventLog(ledger.pool), dispute_id)
    last = evidence["timeline"][-1]
    assert last["event"] == "TransferReceived"
    assert last["recorded_after_dispute_opened"] and last["late_upload"]
    assert last["out_of_order"]  # backdated before the dispatch it claims to receive
    assert evidence["last_provable_holder"]["library"] == CHENGDU
    assert evidence["last_provable_holder"]["recorded_after_dispute_opened"] is True
    assert evidence["last_provable_holder_when_opened"]["library"] == YUZHONG
    html = render_html(evidence)
    assert "Last library that provably held the copy: SC-510100" in html
    assert "When the dispute was opened it was CQ-500103" in html
    assert "after opening" in html and "<script" not in html and "http://" not in html
    assert "平凡的世界" in html


def test_unknown_dispute(ledger: Circulation) -> None:
    with pytest.raises(UnknownDispute):
        build(EventLog(ledger.pool), UUID(int=1))


def test_streams_decode_as_the_mapper_does(case) -> None:
    """The evidence file reads events with the event log's fast decoder: the same events
    as eventsourcing's own mapper gives for the same rows."""
    from eventsourcing.application import Application
    from eventsourcing.persistence import StoredEvent

    from ledger.eventlog import events_after

    ledger, dispute_id, _ = case
    log = EventLog(ledger.pool)
    dispute = ledger.load([dispute_id])[dispute_id]
    ids = [dispute.item_id, dispute_id]
    fast = log.streams(ids)
    mapper = Application().mapper
    with log.connection() as conn:
        rows = events_after(conn, ids, [0, 0])
    for aggregate_id in ids:
        slow = [
            mapper.to_domain_event(
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
            )
            for r in rows
            if r["originator_id"] == aggregate_id
        ]
        assert slow
        assert [type(r.event) for r in fast[aggregate_id]] == [type(e) for e in slow]
        assert [vars(r.event) for r in fast[aggregate_id]] == [vars(e) for e in slow]

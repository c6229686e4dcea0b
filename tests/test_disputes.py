"""Disputes between libraries: who may open, speak and rule; claims; the sweep; the sheet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.disputes.queries import list_disputes, settlement
from ledger.disputes.sweep import sweep
from ledger.domain.errors import (
    DuplicateReturnClaim,
    InvalidInput,
    ItemNotOnLoan,
)
from ledger.eventlog import EventLog
from tests.conftest import ADMIN, open_ledger
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    MEIGU,
    YUZHONG,
    count_events,
    desk,
    join_all,
    now,
    refused,
    register_item,
    register_reader,
    shipped,
)
from tests.helpers import open_dispute as open_


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    join_all(ledger)
    yield ledger


def test_claims_and_the_sweep_open_each_dispute_once(app: Circulation, dsn: str) -> None:
    transfer = shipped(app, "T1", days_ago=20)
    shipped(app, "T2", days_ago=3)  # not overdue yet
    register_item(app, CHENGDU, "C1")
    reader = register_reader(app, 77)
    app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="C1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=now() - timedelta(days=40),
        )
    )
    # the reader says they returned it at Jinjiang, which never saw it
    app.execute(
        c.ClaimReturned(
            owner=CHENGDU,
            barcode="C1",
            returned_at=JINJIANG,
            library=CHENGDU,
            actor=desk(CHENGDU),
            claimed_on=str(date.today()),
            occurred_at=now() - timedelta(days=15),
        )
    )
    refused(
        dsn,
        DuplicateReturnClaim,
        lambda: app.execute(
            c.ClaimReturned(
                owner=CHENGDU,
                barcode="C1",
                returned_at=JINJIANG,
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
    )
    refused(
        dsn,
        ItemNotOnLoan,
        lambda: app.execute(
            c.ClaimReturned(
                owner=CHENGDU,
                barcode="T2",
                returned_at=JINJIANG,
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
    )

    def run() -> list[str]:
        # each sweep is its own process in production: its own writer
        other = open_ledger(dsn)
        try:
            return sweep(other, EventLog(other.pool), transfer_days=14, claim_days=10).opened
        finally:
            other.close()

    opened: list[list[str]] = []
    threads = [threading.Thread(target=lambda: opened.append(run())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(o) for o in opened)[-1] <= 2
    assert sum(len(o) for o in opened) == 2, opened  # one per trigger, across all runs
    events = count_events(dsn)
    again = sweep(app, EventLog(app.pool), transfer_days=14, claim_days=10)
    assert again.opened == [] and again.already_open == 2
    assert count_events(dsn) == events

    listed = list_disputes(EventLog(app.pool))["disputes"]
    by_kind = {d["kind"]: d for d in listed}
    assert set(by_kind) == {"not_received", "claimed_returned"}
    assert by_kind["not_received"]["opened_by"] == CHENGDU
    assert by_kind["not_received"]["other_party"] == YUZHONG
    assert by_kind["not_received"]["trigger"] == f"transfer-not-received/{transfer}"
    assert (
        by_kind["claimed_returned"]["opened_by"],
        by_kind["claimed_returned"]["other_party"],
    ) == (
        CHENGDU,
        JINJIANG,
    )
    assert all(d["automatic"] for d in listed)


def test_the_list_filters_by_party_and_state_and_pages(app: Circulation) -> None:
    for n in range(3):
        shipped(app, f"L{n}")
    ids = [open_(app, barcode=f"L{n}") for n in range(3)]
    app.execute(c.WithdrawDispute(dispute_id=ids[0], reason="arrived", actor=desk(CHENGDU)))
    log = EventLog(app.pool)
    everything = list_disputes(log)
    assert [d["dispute_id"] for d in everything["disputes"]] == [str(i) for i in reversed(ids)]
    assert len(list_disputes(log, only_open=True)["disputes"]) == 2
    assert len(list_disputes(log, library=YUZHONG)["disputes"]) == 3
    assert list_disputes(log, library=JINJIANG)["disputes"] == []
    assert list_disputes(log, library=MEIGU, only_open=True)["disputes"] == []
    first = list_disputes(log, limit=2)
    assert len(first["disputes"]) == 2 and first["next"] is not None
    rest = list_disputes(log, limit=2, before=first["next"])
    assert [d["dispute_id"] for d in rest["disputes"]] == [str(ids[0])]
    assert rest["next"] is None


def test_settlement_sheet_pairs_losses_and_compensation(app: Circulation, dsn: str) -> None:
    shipped(app, "S1")
    # lost on the road: its custodian was the sender, Yuzhong
    app.execute(
        c.DeclareLost(
            owner=CHENGDU,
            barcode="S1",
            reason="never arrived",
            library=CHENGDU,
            actor=desk(CHENGDU),
        )
    )
    # lost on loan from Chengdu's own desk: not in another library's custody
    register_item(app, CHENGDU, "S2")
    reader = register_reader(app, 55)
    app.execute(
        c.Borrow(
            owner=CHENGDU, barcode="S2", library=CHENGDU, reader_id=reader, actor=desk(CHENGDU)
        )
    )
    app.execute(
        c.DeclareLost(
            owner=CHENGDU,
            barcode="S2",
            reason="reader lost it",
            library=CHENGDU,
            actor=desk(CHENGDU),
        )
    )
    dispute_id = open_(app, barcode="S1", kind="lost_in_transit")
    app.execute(
        c.ResolveDispute(
            dispute_id=dispute_id,
            liable_library=YUZHONG,
            compensation="120.00",
            text="lost by the courier Yuzhong chose",
            actor=ADMIN,
        )
    )
    today = date.today()
    log = EventLog(app.pool)
    sheet = settlement(log, today - timedelta(days=1), today + timedelta(days=1))
    assert [(r["payer"], r["payee"]) for r in sheet["rows"]] == [(YUZHONG, CHENGDU)]
    row = sheet["rows"][0]
    assert row["items_lost_in_payer_custody"] == 1
    assert row["items_lost"][0]["barcode"] == "S1"
    assert row["compensation_cny"] == "120.00" and sheet["total_compensation_cny"] == "120.00"
    assert settlement(log, today, today, library=JINJIANG)["rows"] == []
    assert settlement(log, today - timedelta(days=30), today - timedelta(days=20))["rows"] == []
    with pytest.raises(InvalidInput):
        settlement(log, today, today - timedelta(days=1))

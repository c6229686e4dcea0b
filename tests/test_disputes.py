"""Disputes between libraries: who may open, speak and rule; claims; the sweep; the sheet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from ledger.application import Circulation
from ledger.disputes.queries import list_disputes, settlement
from ledger.disputes.sweep import sweep
from ledger.domain.disputes import Dispute, DisputeStatus
from ledger.domain.errors import (
    AdministratorOnly,
    DisputeClosed,
    DuplicateReturnClaim,
    InvalidInput,
    ItemNotOnLoan,
    NotADisputeParty,
    UnknownDispute,
    UnknownItem,
    WrongLibrary,
)
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
    register_item,
    register_reader,
)
from tests.test_rules import refused

SHA = "ab" * 32


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    join_all(ledger)
    yield ledger


def shipped(app: Circulation, barcode: str = "B1", days_ago: int = 20) -> UUID:
    """A Chengdu item lent, returned at Yuzhong, shipped home ``days_ago`` days ago."""
    register_item(app, CHENGDU, barcode)
    reader = register_reader(app, hash(barcode) % 900 + 1)
    at = now() - timedelta(days=days_ago + 5)
    app.borrow(
        owner=CHENGDU,
        barcode=barcode,
        library=CHENGDU,
        reader_id=reader,
        actor=desk(CHENGDU),
        occurred_at=at,
    )
    app.return_item(
        owner=CHENGDU,
        barcode=barcode,
        library=YUZHONG,
        actor=desk(YUZHONG),
        occurred_at=at + timedelta(days=2),
    )
    result = app.dispatch(
        owner=CHENGDU,
        barcode=barcode,
        from_library=YUZHONG,
        to_library=CHENGDU,
        actor=desk(YUZHONG),
        occurred_at=now() - timedelta(days=days_ago),
    )
    return UUID(result.outcome["transfer_id"])


def open_(app: Circulation, barcode: str = "B1", **overrides) -> UUID:
    arguments = {
        "owner": CHENGDU,
        "barcode": barcode,
        "kind": "not_received",
        "other_party": YUZHONG,
        "statement": "渝中区说已寄回，我们没有收到。",
        "library": CHENGDU,
        "actor": desk(CHENGDU),
        **overrides,
    }
    return UUID(app.open_dispute(**arguments).outcome["dispute_id"])


def test_a_dispute_is_a_case_file_of_events(app: Circulation, dsn: str) -> None:
    shipped(app)
    dispute_id = open_(app)
    app.add_statement(
        dispute_id=dispute_id,
        text="We dispatched it by courier, waybill SF123.",
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    app.add_attachment(
        dispute_id=dispute_id,
        uri="https://files.yuzhong.example/sf123.pdf",
        sha256=SHA.upper(),
        description="courier receipt",
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    result = app.resolve_dispute(
        dispute_id=dispute_id,
        liable_library=YUZHONG,
        compensation="85.5",
        text="No proof of delivery.",
        actor=ADMIN,
    )
    assert result.outcome["compensation_cny"] == "85.50"
    events = list(app.events.get(dispute_id))
    assert [type(e).__name__ for e in events] == [
        "Opened",
        "StatementAdded",
        "AttachmentAdded",
        "Resolved",
    ]
    resolved = events[-1]
    assert resolved.compensation_cny == "85.50" and isinstance(resolved.compensation_cny, str)
    assert resolved.recorded_by == ADMIN.principal
    assert resolved.library == CHENGDU  # the case's desk; the key says it was the administrator
    assert events[2].sha256 == SHA and events[2].uri.endswith("sf123.pdf")
    dispute = app.load([dispute_id])[dispute_id]
    assert isinstance(dispute, Dispute)
    assert dispute.status is DisputeStatus.RESOLVED
    assert dispute.resolution.compensation_cny == Decimal("85.50")
    assert len(dispute.statements) == 2
    # closed: nothing more, and a refusal records nothing
    refused(
        dsn,
        DisputeClosed,
        lambda: app.add_statement(
            dispute_id=dispute_id, text="late", library=CHENGDU, actor=desk(CHENGDU)
        ),
    )
    refused(
        dsn,
        DisputeClosed,
        lambda: app.resolve_dispute(
            dispute_id=dispute_id, liable_library=None, compensation="0", text="x", actor=ADMIN
        ),
    )


def test_unknown_items_and_non_parties_are_refused(app: Circulation, dsn: str) -> None:
    shipped(app)
    refused(dsn, UnknownItem, lambda: open_(app, barcode="NOPE"), field="barcode")
    # Jinjiang never touched the item: it can neither open nor be named
    refused(
        dsn,
        NotADisputeParty,
        lambda: open_(app, library=JINJIANG, actor=desk(JINJIANG)),
        field="library",
    )
    refused(dsn, NotADisputeParty, lambda: open_(app, other_party=JINJIANG), field="other_party")
    refused(dsn, InvalidInput, lambda: open_(app, other_party=CHENGDU), field="other_party")
    refused(dsn, InvalidInput, lambda: open_(app, kind="vanished"), field="kind")
    refused(dsn, InvalidInput, lambda: open_(app, statement="  "), field="statement")
    refused(dsn, WrongLibrary, lambda: open_(app, actor=desk(YUZHONG)), field="library")
    dispute_id = open_(app)
    refused(
        dsn,
        NotADisputeParty,
        lambda: app.add_statement(
            dispute_id=dispute_id, text="we know", library=JINJIANG, actor=desk(JINJIANG)
        ),
    )
    refused(
        dsn,
        UnknownDispute,
        lambda: app.add_statement(
            dispute_id=uuid4(), text="hello", library=CHENGDU, actor=desk(CHENGDU)
        ),
    )
    refused(
        dsn,
        InvalidInput,
        lambda: app.add_attachment(
            dispute_id=dispute_id,
            uri="not a uri",
            sha256=SHA,
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="uri",
    )
    refused(
        dsn,
        InvalidInput,
        lambda: app.add_attachment(
            dispute_id=dispute_id,
            uri="https://x.example/a",
            sha256="abc",
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="sha256",
    )


def test_only_the_administrator_resolves(app: Circulation, dsn: str) -> None:
    shipped(app)
    dispute_id = open_(app)
    for key in (desk(CHENGDU), desk(YUZHONG)):
        refused(
            dsn,
            AdministratorOnly,
            lambda key=key: app.resolve_dispute(
                dispute_id=dispute_id,
                liable_library=YUZHONG,
                compensation="10",
                text="mine",
                actor=key,
            ),
        )

    def resolve(liable: str | None, amount: object) -> None:
        app.resolve_dispute(
            dispute_id=dispute_id,
            liable_library=liable,
            compensation=amount,
            text="ruling",
            actor=ADMIN,
        )

    refused(dsn, InvalidInput, lambda: resolve(YUZHONG, 85.5))  # a float is never money
    refused(dsn, InvalidInput, lambda: resolve(YUZHONG, "-1"))
    refused(dsn, InvalidInput, lambda: resolve(YUZHONG, "1.005"))
    refused(dsn, InvalidInput, lambda: resolve(YUZHONG, "ten"))
    refused(dsn, InvalidInput, lambda: resolve(JINJIANG, "10"), field="liable_library")
    refused(dsn, InvalidInput, lambda: resolve(None, "10"), field="compensation")
    resolve(None, "0")
    assert app.load([dispute_id])[dispute_id].resolution.liable_library is None


def test_withdrawal_by_the_opener_only(app: Circulation, dsn: str) -> None:
    shipped(app)
    dispute_id = open_(app)
    refused(
        dsn,
        NotADisputeParty,
        lambda: app.withdraw_dispute(dispute_id=dispute_id, reason="found it", actor=desk(YUZHONG)),
    )
    app.withdraw_dispute(dispute_id=dispute_id, reason="found it", actor=desk(CHENGDU))
    assert app.load([dispute_id])[dispute_id].status is DisputeStatus.WITHDRAWN


def test_a_retried_opening_records_one_dispute(app: Circulation, dsn: str) -> None:
    shipped(app)
    first = app.open_dispute(
        owner=CHENGDU,
        barcode="B1",
        kind="damaged",
        other_party=YUZHONG,
        statement="wet",
        library=CHENGDU,
        actor=desk(CHENGDU),
        command_id="desk-1",
    )
    events = count_events(dsn)
    again = app.open_dispute(
        owner=CHENGDU,
        barcode="B1",
        kind="damaged",
        other_party=YUZHONG,
        statement="wet",
        library=CHENGDU,
        actor=desk(CHENGDU),
        command_id="desk-1",
    )
    assert again.replayed and again.outcome == first.outcome
    assert count_events(dsn) == events


def test_claims_and_the_sweep_open_each_dispute_once(app: Circulation, dsn: str) -> None:
    transfer = shipped(app, "T1", days_ago=20)
    shipped(app, "T2", days_ago=3)  # not overdue yet
    register_item(app, CHENGDU, "C1")
    reader = register_reader(app, 77)
    app.borrow(
        owner=CHENGDU,
        barcode="C1",
        library=CHENGDU,
        reader_id=reader,
        actor=desk(CHENGDU),
        occurred_at=now() - timedelta(days=40),
    )
    # the reader says they returned it at Jinjiang, which never saw it
    app.claim_returned(
        owner=CHENGDU,
        barcode="C1",
        returned_at=JINJIANG,
        library=CHENGDU,
        actor=desk(CHENGDU),
        claimed_on=str(date.today()),
        occurred_at=now() - timedelta(days=15),
    )
    refused(
        dsn,
        DuplicateReturnClaim,
        lambda: app.claim_returned(
            owner=CHENGDU,
            barcode="C1",
            returned_at=JINJIANG,
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
    )
    refused(
        dsn,
        ItemNotOnLoan,
        lambda: app.claim_returned(
            owner=CHENGDU,
            barcode="T2",
            returned_at=JINJIANG,
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
    )

    def run() -> list[str]:
        # each sweep is its own process in production: its own writer
        other = open_ledger(dsn)
        try:
            return sweep(other, transfer_days=14, claim_days=10).opened
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
    again = sweep(app, transfer_days=14, claim_days=10)
    assert again.opened == [] and again.already_open == 2
    assert count_events(dsn) == events

    listed = list_disputes(app)["disputes"]
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
    app.withdraw_dispute(dispute_id=ids[0], reason="arrived", actor=desk(CHENGDU))
    everything = list_disputes(app)
    assert [d["dispute_id"] for d in everything["disputes"]] == [str(i) for i in reversed(ids)]
    assert len(list_disputes(app, only_open=True)["disputes"]) == 2
    assert len(list_disputes(app, library=YUZHONG)["disputes"]) == 3
    assert list_disputes(app, library=JINJIANG)["disputes"] == []
    assert list_disputes(app, library=MEIGU, only_open=True)["disputes"] == []
    first = list_disputes(app, limit=2)
    assert len(first["disputes"]) == 2 and first["next"] is not None
    rest = list_disputes(app, limit=2, before=first["next"])
    assert [d["dispute_id"] for d in rest["disputes"]] == [str(ids[0])]
    assert rest["next"] is None


def test_settlement_sheet_pairs_losses_and_compensation(app: Circulation, dsn: str) -> None:
    shipped(app, "S1")
    # lost on the road: its custodian was the sender, Yuzhong
    app.declare_lost(
        owner=CHENGDU, barcode="S1", reason="never arrived", library=CHENGDU, actor=desk(CHENGDU)
    )
    # lost on loan from Chengdu's own desk: not in another library's custody
    register_item(app, CHENGDU, "S2")
    reader = register_reader(app, 55)
    app.borrow(owner=CHENGDU, barcode="S2", library=CHENGDU, reader_id=reader, actor=desk(CHENGDU))
    app.declare_lost(
        owner=CHENGDU, barcode="S2", reason="reader lost it", library=CHENGDU, actor=desk(CHENGDU)
    )
    dispute_id = open_(app, barcode="S1", kind="lost_in_transit")
    app.resolve_dispute(
        dispute_id=dispute_id,
        liable_library=YUZHONG,
        compensation="120.00",
        text="lost by the courier Yuzhong chose",
        actor=ADMIN,
    )
    today = date.today()
    sheet = settlement(app, today - timedelta(days=1), today + timedelta(days=1))
    assert [(r["payer"], r["payee"]) for r in sheet["rows"]] == [(YUZHONG, CHENGDU)]
    row = sheet["rows"][0]
    assert row["items_lost_in_payer_custody"] == 1
    assert row["items_lost"][0]["barcode"] == "S1"
    assert row["compensation_cny"] == "120.00" and sheet["total_compensation_cny"] == "120.00"
    assert settlement(app, today, today, library=JINJIANG)["rows"] == []
    assert settlement(app, today - timedelta(days=30), today - timedelta(days=20))["rows"] == []
    with pytest.raises(InvalidInput):
        settlement(app, today, today - timedelta(days=1))

"""History and time travel: an item's timeline, its state as of an instant, late syncs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.errors import InvalidInput, UnknownItem
from ledger.eventlog import EventLog
from ledger.projections.views import Views
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, YUZHONG, desk, join_all, register_reader
from tests.test_projections import fold


@pytest.fixture
def app(dsn: str) -> Iterator[Circulation]:
    ledger = open_ledger(dsn)
    yield ledger
    ledger.close()


T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_as_of_before_the_item_existed_is_an_answer(app: Circulation) -> None:
    join_all(app, [CHENGDU])
    app.execute(c.RegisterItem(owner=CHENGDU, barcode="B1", actor=desk(CHENGDU), occurred_at=T0))
    views = Views(EventLog(app.pool))
    answer = views.as_of(CHENGDU, "B1", T0 - timedelta(seconds=1))
    assert answer.existed is False and answer.state is None and answer.entry is None
    assert "did not exist yet" in answer.message and answer.registered_at == T0
    at_registration = views.as_of(CHENGDU, "B1", T0)
    assert at_registration.existed and str(at_registration.state.status) == "on_shelf"
    with pytest.raises(UnknownItem):
        views.as_of(CHENGDU, "NEVER", T0)
    with pytest.raises(InvalidInput):
        views.as_of(CHENGDU, "B1", datetime(2026, 3, 1))  # no offset: which instant?


def test_history_shows_each_event_with_the_state_after_it(app: Circulation) -> None:
    join_all(app, [CHENGDU, YUZHONG])
    reader = register_reader(app, 7)
    app.execute(c.RegisterItem(owner=CHENGDU, barcode="B1", actor=desk(CHENGDU), occurred_at=T0))
    app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=1),
        )
    )
    app.execute(
        c.Return(
            owner=CHENGDU,
            barcode="B1",
            library=YUZHONG,
            actor=desk(YUZHONG),
            occurred_at=T0 + timedelta(days=9),
        )
    )
    history = Views(EventLog(app.pool)).history(CHENGDU, "B1")
    assert [e.event for e in history.entries] == [
        "Item.Registered",
        "Item.Borrowed",
        "Item.Returned",
    ]
    statuses = [str(e.state.status) for e in history.entries]
    assert statuses == ["on_shelf", "on_loan", "awaiting_transfer"]
    borrowed = history.entries[1]
    assert borrowed.library == CHENGDU and borrowed.recorded_by == desk(CHENGDU).principal
    assert borrowed.details["reader_id"] == reader and "loan_id" in borrowed.details
    assert [e.version for e in history.entries] == [1, 2, 3]
    assert history.entries[0].recorded_at <= history.entries[2].recorded_at
    # Each entry holds its own state: later events did not change earlier snapshots.
    assert history.entries[1].state.loan is not None and history.entries[2].state.loan is None
    middle = Views(EventLog(app.pool)).as_of(CHENGDU, "B1", T0 + timedelta(days=5))
    assert str(middle.state.status) == "on_loan" and middle.entry.version == 2


def test_a_late_sync_changes_a_past_answer_by_occurrence_not_by_recording(
    app: Circulation, dsn: str
) -> None:
    join_all(app, [CHENGDU, YUZHONG])
    reader = register_reader(app, 8)
    app.execute(c.RegisterItem(owner=CHENGDU, barcode="B1", actor=desk(CHENGDU), occurred_at=T0))
    app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=1),
        )
    )
    views = Views(EventLog(app.pool))
    asked_at = T0 + timedelta(days=3)
    before_sync = datetime.now(UTC)
    assert str(views.as_of(CHENGDU, "B1", asked_at).state.status) == "on_loan"
    # An offline desk syncs a return that happened on day 2.
    app.execute(
        c.Return(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=2),
        )
    )
    assert str(views.as_of(CHENGDU, "B1", asked_at).state.status) == "on_shelf"
    # What the ledger knew at an instant never changes.
    known = views.as_of(CHENGDU, "B1", before_sync, basis="recorded")
    assert str(known.state.status) == "on_loan"
    # Holdings as of an instant follow the same clock, from the custody projection.
    fold(dsn)
    held = views.holdings(CHENGDU, asked_at)
    assert [(row["owner"], row["held_as"]) for row in held.rows] == [(CHENGDU, "shelf")]
    assert views.holdings(CHENGDU, T0 - timedelta(days=1)).rows == []


def test_an_event_never_takes_effect_before_the_one_before_it(app: Circulation, dsn: str) -> None:
    join_all(app, [CHENGDU, YUZHONG])
    reader = register_reader(app, 9)
    app.execute(c.RegisterItem(owner=CHENGDU, barcode="B1", actor=desk(CHENGDU), occurred_at=T0))
    app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=5),
        )
    )
    # Recorded after the borrow, but its desk says it happened before it.
    app.execute(
        c.Return(
            owner=CHENGDU,
            barcode="B1",
            library=YUZHONG,
            actor=desk(YUZHONG),
            occurred_at=T0 + timedelta(days=4),
        )
    )
    views = Views(EventLog(app.pool))
    entries = views.history(CHENGDU, "B1").entries
    assert entries[2].occurred_at == T0 + timedelta(days=4)
    assert entries[2].effective_at == T0 + timedelta(days=5)
    on_day_4 = views.as_of(CHENGDU, "B1", T0 + timedelta(days=4, hours=12))
    assert str(on_day_4.state.status) == "on_shelf"  # neither borrowed nor returned yet
    fold(dsn)
    assert views.holdings(YUZHONG, T0 + timedelta(days=5, seconds=1)).rows[0]["held_as"] == (
        "shelf"
    )


def test_holdings_and_item_as_of_agree_after_a_renewal_and_a_late_return(
    app: Circulation, dsn: str
) -> None:
    join_all(app, [CHENGDU, YUZHONG])
    reader = register_reader(app, 10)
    app.execute(c.RegisterItem(owner=CHENGDU, barcode="B1", actor=desk(CHENGDU), occurred_at=T0))
    loan = app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=1),
        )
    )
    app.execute(
        c.Renew(
            loan_id=UUID(loan.outcome["loan_id"]),
            library=CHENGDU,
            actor=desk(CHENGDU),
            occurred_at=T0 + timedelta(days=6),
        )
    )
    app.execute(
        c.Return(  # synced late: the desk says day 5, after the day-6 renewal was recorded
            owner=CHENGDU,
            barcode="B1",
            library=YUZHONG,
            actor=desk(YUZHONG),
            occurred_at=T0 + timedelta(days=5),
        )
    )
    fold(dsn)
    views = Views(EventLog(app.pool))
    for at, on_loan in ((T0 + timedelta(days=5, hours=12), True), (T0 + timedelta(days=7), False)):
        item = views.as_of(CHENGDU, "B1", at)
        assert (str(item.state.status) == "on_loan") is on_loan
        held_here = [r["held_as"] for r in views.holdings(CHENGDU, at).rows]
        held_there = [r["held_as"] for r in views.holdings(YUZHONG, at).rows]
        assert (held_here, held_there) == ((["loan"], []) if on_loan else ([], ["shelf"]))

"""The circulation rules: every refusal has its own error and records nothing; every
accepted command records events that say when, where, by whom, under which key, and
which libraries own and hold the item."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from ledger.application import Circulation
from ledger.domain.common import CONSORTIUM_TZ, Actor, item_id
from ledger.domain.errors import (
    DomainError,
    DuplicateItem,
    DuplicateLibrary,
    InvalidIdentityNumber,
    InvalidInput,
    ItemInTransit,
    ItemNotAvailable,
    ItemNotLost,
    ItemNotOnLoan,
    ItemWithdrawn,
    LibraryNotCirculating,
    LoanClosed,
    NotPermitted,
    OccurredInFuture,
    ReaderBlocked,
    ReaderOverLimit,
    RenewalNotAllowed,
    UnknownItem,
    UnknownLibrary,
    UnknownLoan,
    UnknownTransfer,
    WrongLibrary,
)
from ledger.domain.items import Item, Status
from ledger.domain.readers import Reader
from tests.conftest import ADMIN
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    MEIGU,
    YUZHONG,
    count_events,
    count_rows,
    desk,
    identity_number,
    join_all,
    now,
    register_item,
    register_reader,
    stream,
    wrong_check_char,
)


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    """The ledger with the four test libraries joined."""
    join_all(ledger)
    yield ledger


def refused(
    dsn: str, error: type[DomainError], action: Callable[[], Any], *, field: str | None = None
) -> DomainError:
    """Run ``action``; it must raise exactly ``error`` and leave the event store as it was."""
    events, commands = count_events(dsn), count_rows(dsn, "command_log")
    with pytest.raises(DomainError) as caught:
        action()
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert count_events(dsn) == events, "a refused command recorded events"
    assert count_rows(dsn, "command_log") == commands, "a refused command wrote a command_log row"
    if field is not None:
        assert caught.value.field == field
    return caught.value


def borrow(app: Circulation, owner: str, barcode: str, at: str, reader: UUID, **kw: Any) -> Any:
    return app.borrow(
        owner=owner, barcode=barcode, library=at, reader_id=reader, actor=desk(at), **kw
    )


def give_back(app: Circulation, owner: str, barcode: str, at: str, **kw: Any) -> Any:
    return app.return_item(owner=owner, barcode=barcode, library=at, actor=desk(at), **kw)


def item(app: Circulation, owner: str, barcode: str) -> Item:
    found = app.get_item(owner, barcode)
    assert found is not None
    return found


def reader(app: Circulation, reader_id: UUID) -> Reader:
    loaded = app.load([reader_id])[reader_id]
    assert isinstance(loaded, Reader)
    return loaded


def assert_envelope(event: Any, *, library: str, owner: str, holding: str, command_id: str) -> None:
    assert event.library == library
    assert event.owner == owner
    assert event.holding == holding
    assert event.recorded_by == f"key:{library}"
    assert event.command_id == command_id
    assert event.occurred_at.tzinfo is not None


# ----------------------------------------------------------------------------- refusals


def test_unknown_library(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    error = refused(dsn, UnknownLibrary, lambda: borrow(app, CHENGDU, "B1", "SC-510300", reader_id))
    assert error.field == "library"
    refused(
        dsn,
        UnknownLibrary,
        lambda: app.register_item(owner="SC-510300", barcode="X", actor=desk("SC-510300")),
    )
    refused(
        dsn,
        UnknownLibrary,
        lambda: app.dispatch(
            owner=CHENGDU,
            barcode="B1",
            from_library=CHENGDU,
            to_library="CQ-500104",
            actor=desk(CHENGDU),
        ),
        field="to_library",
    )


def test_unknown_item(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(dsn, UnknownItem, lambda: borrow(app, CHENGDU, "NO-SUCH", CHENGDU, reader_id))
    # Barcodes are unique only inside a library: B1 of Yuzhong is not B1 of Chengdu.
    refused(dsn, UnknownItem, lambda: give_back(app, YUZHONG, "B1", YUZHONG))


def test_item_already_on_loan(app: Circulation, dsn: str) -> None:
    first, second = register_reader(app, 1), register_reader(app, 2)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, first)
    refused(dsn, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", CHENGDU, second))
    refused(dsn, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", CHENGDU, first))
    assert item(app, CHENGDU, "B1").loan.reader_id == first


def test_borrow_needs_the_item_on_shelf_at_the_borrowing_library(
    app: Circulation, dsn: str
) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(dsn, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", YUZHONG, reader_id))


def test_return_of_item_not_on_loan(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(dsn, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B1", CHENGDU))
    reader_id = register_reader(app, 1)
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", CHENGDU)
    refused(dsn, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B1", CHENGDU))


def test_borrow_while_in_transit(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", YUZHONG)
    app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=YUZHONG, to_library=CHENGDU, actor=desk(YUZHONG)
    )
    assert item(app, CHENGDU, "B1").status is Status.IN_TRANSIT
    for at in (CHENGDU, YUZHONG):
        refused(dsn, ItemInTransit, lambda at=at: borrow(app, CHENGDU, "B1", at, reader_id))


def test_reader_over_the_limit(app: Circulation, dsn: str) -> None:
    assert app.loan_limit == 5
    reader_id = register_reader(app, 1)
    for n in range(6):
        register_item(app, CHENGDU, f"B{n}")
    for n in range(5):
        borrow(app, CHENGDU, f"B{n}", CHENGDU, reader_id)
    refused(dsn, ReaderOverLimit, lambda: borrow(app, CHENGDU, "B5", CHENGDU, reader_id))
    assert item(app, CHENGDU, "B5").status is Status.ON_SHELF
    # Giving one back makes room again.
    give_back(app, CHENGDU, "B0", CHENGDU)
    borrow(app, CHENGDU, "B5", CHENGDU, reader_id)
    assert len(reader(app, reader_id).open_loans) == 5


def test_the_limit_is_consortium_wide(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    for n in range(3):
        register_item(app, CHENGDU, f"C{n}")
        register_item(app, YUZHONG, f"Y{n}")
    for n in range(3):
        borrow(app, CHENGDU, f"C{n}", CHENGDU, reader_id)
    for n in range(2):
        borrow(app, YUZHONG, f"Y{n}", YUZHONG, reader_id)
    refused(dsn, ReaderOverLimit, lambda: borrow(app, YUZHONG, "Y2", YUZHONG, reader_id))


def test_blocked_reader(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1, home=CHENGDU)
    register_item(app, CHENGDU, "B1")
    # Only the home library (or the administrator) blocks a reader.
    refused(
        dsn,
        NotPermitted,
        lambda: app.block_reader(
            reader_id=reader_id, reason="unpaid", library=YUZHONG, actor=desk(YUZHONG)
        ),
    )
    app.block_reader(reader_id=reader_id, reason="unpaid", library=CHENGDU, actor=desk(CHENGDU))
    refused(dsn, ReaderBlocked, lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id))
    app.unblock_reader(reader_id=reader_id, library=CHENGDU, actor=desk(CHENGDU))
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)


@pytest.mark.parametrize(
    ("number", "part"),
    [
        ("51010419900101123", "format"),  # 17 characters
        ("5101041990010112A4", "format"),  # a letter inside
        (wrong_check_char(identity_number(7)), "checksum"),
        (wrong_check_char("11010519491231002X"), "checksum"),
    ],
)
def test_invalid_identity_number(app: Circulation, dsn: str, number: str, part: str) -> None:
    def register() -> Any:
        return app.register_reader(
            document="resident_id", number=number, home_library=CHENGDU, actor=desk(CHENGDU)
        )

    error = refused(dsn, InvalidIdentityNumber, register)
    assert isinstance(error, InvalidIdentityNumber)
    assert error.part == part
    assert error.field == "number"
    assert number not in error.message
    register_item(app, CHENGDU, "B1")
    error = refused(
        dsn,
        InvalidIdentityNumber,
        lambda: app.borrow(
            owner=CHENGDU, barcode="B1", library=CHENGDU, reader_number=number, actor=desk(CHENGDU)
        ),
    )
    assert isinstance(error, InvalidIdentityNumber)
    assert error.part == part


def test_occurred_in_the_future(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    later = now() + timedelta(hours=1)
    refused(
        dsn,
        OccurredInFuture,
        lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=later),
        field="occurred_at",
    )
    # Within the desk clock skew is fine.
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=now() + timedelta(seconds=30))


def test_naive_occurred_at(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    naive = datetime.now() - timedelta(minutes=5)
    refused(
        dsn,
        InvalidInput,
        lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=naive),
        field="occurred_at",
    )


def test_duplicate_item(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(dsn, DuplicateItem, lambda: register_item(app, CHENGDU, "B1", title="other"))
    # The same barcode at another library is another item.
    register_item(app, YUZHONG, "B1")
    assert item(app, YUZHONG, "B1").owner == YUZHONG


def test_duplicate_library(app: Circulation, dsn: str) -> None:
    refused(
        dsn,
        DuplicateLibrary,
        lambda: app.join_library(
            code=CHENGDU, name="另一个", region="sichuan", level="county", actor=ADMIN
        ),
        field="code",
    )


def test_library_key_acting_for_another_library(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        WrongLibrary,
        lambda: app.borrow(
            owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=reader_id, actor=desk(YUZHONG)
        ),
    )
    refused(
        dsn,
        WrongLibrary,
        lambda: app.register_item(owner=CHENGDU, barcode="B2", actor=desk(YUZHONG)),
    )
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    refused(
        dsn,
        WrongLibrary,
        lambda: app.return_item(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(JINJIANG)),
    )


def test_only_the_administrator_registers_libraries(app: Circulation, dsn: str) -> None:
    newcomer = Actor(principal="key:SC-510500", library="SC-510500")
    refused(
        dsn,
        NotPermitted,
        lambda: app.join_library(
            code="SC-510500",
            name="泸州市图书馆",
            region="sichuan",
            level="prefecture",
            actor=newcomer,
        ),
    )
    refused(
        dsn,
        NotPermitted,
        lambda: app.change_policy(library=CHENGDU, policy={"loan_days": 90}, actor=desk(CHENGDU)),
    )


def test_non_circulating_library_cannot_lend(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1, home=MEIGU)
    register_item(app, MEIGU, "M1")
    refused(dsn, LibraryNotCirculating, lambda: borrow(app, MEIGU, "M1", MEIGU, reader_id))
    # Once the administrator lets it circulate, it lends.
    app.change_policy(library=MEIGU, policy={}, can_circulate=True, actor=ADMIN)
    borrow(app, MEIGU, "M1", MEIGU, reader_id)
    assert item(app, MEIGU, "M1").status is Status.ON_LOAN


def test_renewal_beyond_policy(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")  # Chengdu allows one renewal
    loan = borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    loan_id = UUID(loan.outcome["loan_id"])
    first = app.renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU))
    assert first.outcome["renewals"] == 1
    assert datetime.fromisoformat(first.outcome["due_at"]) >= datetime.fromisoformat(
        loan.outcome["due_at"]
    )
    refused(
        dsn,
        RenewalNotAllowed,
        lambda: app.renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU)),
    )
    assert item(app, CHENGDU, "B1").loan.renewals == 1


def test_receive_by_the_wrong_library(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    sent = app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    refused(
        dsn,
        NotPermitted,
        lambda: app.receive(transfer_id=transfer_id, library=JINJIANG, actor=desk(JINJIANG)),
    )
    app.receive(transfer_id=transfer_id, library=YUZHONG, actor=desk(YUZHONG))
    assert item(app, CHENGDU, "B1").location == YUZHONG


def test_dispatch_to_the_same_library(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        InvalidInput,
        lambda: app.dispatch(
            owner=CHENGDU,
            barcode="B1",
            from_library=CHENGDU,
            to_library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="to_library",
    )


def test_dispatch_only_from_where_the_item_is(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        ItemNotAvailable,
        lambda: app.dispatch(
            owner=CHENGDU,
            barcode="B1",
            from_library=YUZHONG,
            to_library=JINJIANG,
            actor=desk(YUZHONG),
        ),
    )


def test_withdraw_only_by_the_owner(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        NotPermitted,
        lambda: app.withdraw(
            owner=CHENGDU, barcode="B1", reason="worn", library=YUZHONG, actor=desk(YUZHONG)
        ),
    )
    app.withdraw(owner=CHENGDU, barcode="B1", reason="worn", library=CHENGDU, actor=desk(CHENGDU))
    assert item(app, CHENGDU, "B1").status is Status.WITHDRAWN
    reader_id = register_reader(app, 1)
    refused(dsn, ItemWithdrawn, lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id))


# --------------------------------------------------------------------------- happy paths


def test_borrow_records_the_envelope_and_both_aggregates(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    before = count_events(dsn)
    result = borrow(app, CHENGDU, "B1", CHENGDU, reader_id, command_id="borrow-1")
    assert not result.replayed
    assert len(result.notification_ids) == 2  # Item.Borrowed and Reader.LoanOpened
    assert count_events(dsn) == before + 2
    borrowed = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(borrowed, Item.Borrowed)
    assert_envelope(
        borrowed, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="borrow-1"
    )
    assert borrowed.reader_id == reader_id
    assert str(borrowed.loan_id) == result.outcome["loan_id"]
    opened = stream(app, reader_id)[-1]
    assert isinstance(opened, Reader.LoanOpened)
    assert opened.loan_id == borrowed.loan_id
    assert opened.command_id == "borrow-1"
    # Chengdu lends for 30 days, ending at local midnight.
    due = borrowed.due_at.astimezone(CONSORTIUM_TZ)
    start = borrowed.occurred_at.astimezone(CONSORTIUM_TZ)
    assert (due.date() - start.date()).days == 30
    assert (due.hour, due.minute) == (23, 59)


def test_return_at_the_owner_shelves_it(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    loan = borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    result = give_back(app, CHENGDU, "B1", CHENGDU, command_id="ret-1")
    assert result.outcome["disposition"] == "shelve"
    assert result.outcome["loan_id"] == loan.outcome["loan_id"]
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.loan, state.destination) == (
        Status.ON_SHELF,
        CHENGDU,
        None,
        None,
    )
    returned = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(returned, Item.Returned)
    assert returned.disposition == "shelve"
    assert_envelope(returned, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="ret-1")
    assert reader(app, reader_id).open_loans == {}
    closed = stream(app, reader_id)[-1]
    assert isinstance(closed, Reader.LoanClosed)
    assert closed.how == "returned"


def test_return_elsewhere_goes_back_to_the_owner(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    result = give_back(app, CHENGDU, "B1", YUZHONG, command_id="ret-y")
    assert result.outcome["disposition"] == "transfer_to_owner"
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.destination) == (
        Status.AWAITING_TRANSFER,
        YUZHONG,
        CHENGDU,
    )
    returned = stream(app, item_id(CHENGDU, "B1"))[-1]
    # acting Yuzhong; the lending (holding) desk was Chengdu's
    assert_envelope(returned, library=YUZHONG, owner=CHENGDU, holding=CHENGDU, command_id="ret-y")
    assert returned.borrowed_at_library == CHENGDU
    # Nobody can borrow it while it waits to go home, not even where it sits.
    other = register_reader(app, 2)
    refused(dsn, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", YUZHONG, other))

    sent = app.dispatch(
        owner=CHENGDU,
        barcode="B1",
        from_library=YUZHONG,
        to_library=CHENGDU,
        actor=desk(YUZHONG),
        command_id="send-1",
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    state = item(app, CHENGDU, "B1")
    assert state.status is Status.IN_TRANSIT
    assert state.transfer is not None
    assert (state.transfer.from_library, state.transfer.to_library) == (YUZHONG, CHENGDU)
    dispatched = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(dispatched, Item.TransferDispatched)
    assert_envelope(
        dispatched, library=YUZHONG, owner=CHENGDU, holding=YUZHONG, command_id="send-1"
    )

    app.receive(transfer_id=transfer_id, library=CHENGDU, actor=desk(CHENGDU), command_id="rcv-1")
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.transfer, state.destination) == (
        Status.ON_SHELF,
        CHENGDU,
        None,
        None,
    )
    received = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(received, Item.TransferReceived)
    # in transit, the sender stays the custodian until the receiver signs
    assert_envelope(received, library=CHENGDU, owner=CHENGDU, holding=YUZHONG, command_id="rcv-1")
    borrow(app, CHENGDU, "B1", CHENGDU, other)


def test_in_transit_item_keeps_no_stale_destination(app: Circulation) -> None:
    """``destination`` means "where an AWAITING_TRANSFER item must go" (items.py); once the
    item is shipped the open transfer says where it goes, and a cancellation restores it."""
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", YUZHONG)
    sent = app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=YUZHONG, to_library=CHENGDU, actor=desk(YUZHONG)
    )
    state = item(app, CHENGDU, "B1")
    assert state.status is Status.IN_TRANSIT
    assert state.destination is None, "an item in transit still has an awaiting destination"
    app.cancel_transfer(
        transfer_id=UUID(sent.outcome["transfer_id"]),
        reason="plan_changed",
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.destination) == (Status.AWAITING_TRANSFER, CHENGDU)


def test_floating_item_stays_and_circulates_where_returned(app: Circulation) -> None:
    first, second = register_reader(app, 1), register_reader(app, 2, home=YUZHONG)
    register_item(app, JINJIANG, "F1")  # Jinjiang lets its items float
    borrow(app, JINJIANG, "F1", JINJIANG, first)
    result = give_back(app, JINJIANG, "F1", YUZHONG, command_id="float-1")
    assert result.outcome["disposition"] == "float"
    state = item(app, JINJIANG, "F1")
    assert (state.status, state.location, state.owner, state.destination) == (
        Status.ON_SHELF,
        YUZHONG,
        JINJIANG,
        None,
    )
    returned = stream(app, item_id(JINJIANG, "F1"))[-1]
    assert returned.disposition == "float"
    assert_envelope(
        returned, library=YUZHONG, owner=JINJIANG, holding=JINJIANG, command_id="float-1"
    )
    # It now circulates at Yuzhong under Yuzhong's loan period (21 days) ...
    loan = borrow(app, JINJIANG, "F1", YUZHONG, second, command_id="float-2")
    borrowed = stream(app, item_id(JINJIANG, "F1"))[-1]
    assert_envelope(
        borrowed, library=YUZHONG, owner=JINJIANG, holding=YUZHONG, command_id="float-2"
    )
    due = datetime.fromisoformat(loan.outcome["due_at"]).astimezone(CONSORTIUM_TZ)
    assert (due.date() - borrowed.occurred_at.astimezone(CONSORTIUM_TZ).date()).days == 21
    # ... and no longer at its owner.
    give_back(app, JINJIANG, "F1", YUZHONG)
    refused_borrow = register_reader(app, 3)
    with pytest.raises(ItemNotAvailable):
        borrow(app, JINJIANG, "F1", JINJIANG, refused_borrow)


def test_the_owner_policy_decides_not_the_returning_library(app: Circulation) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")  # Chengdu wants it back
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    # Jinjiang floats its own items, but this one is Chengdu's.
    assert give_back(app, CHENGDU, "B1", JINJIANG).outcome["disposition"] == "transfer_to_owner"


@pytest.mark.parametrize("prior", ["on_shelf", "awaiting_transfer"])
def test_cancelled_transfer_restores_the_prior_state(app: Circulation, prior: str) -> None:
    register_item(app, CHENGDU, "B1")
    if prior == "awaiting_transfer":
        reader_id = register_reader(app, 1)
        borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
        give_back(app, CHENGDU, "B1", YUZHONG)
        origin, target = YUZHONG, CHENGDU
    else:
        origin, target = CHENGDU, YUZHONG
    before = item(app, CHENGDU, "B1")
    sent = app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=origin, to_library=target, actor=desk(origin)
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    result = app.cancel_transfer(
        transfer_id=transfer_id,
        reason="dispatched_in_error",
        note="wrong crate",
        library=origin,
        actor=desk(origin),
        command_id="cancel-1",
    )
    assert result.outcome["status"] == prior
    after = item(app, CHENGDU, "B1")
    assert (after.status, after.location, after.destination, after.transfer) == (
        before.status,
        before.location,
        before.destination,
        None,
    )
    cancelled = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(cancelled, Item.TransferCancelled)
    assert (cancelled.transfer_id, cancelled.reason, cancelled.note) == (
        transfer_id,
        "dispatched_in_error",
        "wrong crate",
    )
    assert_envelope(cancelled, library=origin, owner=CHENGDU, holding=origin, command_id="cancel-1")


def test_cancel_with_unknown_reason_records_nothing(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    sent = app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
    )
    refused(
        dsn,
        InvalidInput,
        lambda: app.cancel_transfer(
            transfer_id=UUID(sent.outcome["transfer_id"]),
            reason="bored",
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="reason",
    )
    assert item(app, CHENGDU, "B1").status is Status.IN_TRANSIT


def test_received_unannounced(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    # Already on shelf right here: nothing to receive.
    refused(
        dsn,
        ItemNotAvailable,
        lambda: app.receive_unannounced(
            owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU)
        ),
    )
    sent = app.dispatch(
        owner=CHENGDU, barcode="B1", from_library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
    )
    # It turns up at Jinjiang instead of Yuzhong.
    app.receive_unannounced(
        owner=CHENGDU,
        barcode="B1",
        library=JINJIANG,
        note="in the wrong van",
        actor=desk(JINJIANG),
        command_id="unann-1",
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.transfer) == (Status.ON_SHELF, JINJIANG, None)
    event = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.ReceivedUnannounced)
    assert str(event.superseded_transfer_id) == sent.outcome["transfer_id"]
    assert event.previous_status == "in_transit"
    assert_envelope(event, library=JINJIANG, owner=CHENGDU, holding=CHENGDU, command_id="unann-1")
    # The superseded transfer cannot be received any more.
    with pytest.raises(DomainError):
        app.receive(
            transfer_id=UUID(sent.outcome["transfer_id"]), library=YUZHONG, actor=desk(YUZHONG)
        )


def test_declare_lost_on_loan_closes_the_readers_loan(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    for n in range(6):
        register_item(app, CHENGDU, f"B{n}")
    loans = [borrow(app, CHENGDU, f"B{n}", CHENGDU, reader_id) for n in range(5)]
    refused(dsn, ReaderOverLimit, lambda: borrow(app, CHENGDU, "B5", CHENGDU, reader_id))
    result = app.declare_lost(
        owner=CHENGDU,
        barcode="B0",
        reason="reader reports it lost",
        library=CHENGDU,
        actor=desk(CHENGDU),
        command_id="lost-1",
    )
    assert result.outcome["loan_id"] == loans[0].outcome["loan_id"]
    state = item(app, CHENGDU, "B0")
    assert (state.status, state.loan, state.transfer) == (Status.LOST, None, None)
    lost = stream(app, item_id(CHENGDU, "B0"))[-1]
    assert isinstance(lost, Item.DeclaredLost)
    assert (str(lost.loan_id), lost.reader_id) == (loans[0].outcome["loan_id"], reader_id)
    assert_envelope(lost, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="lost-1")
    closed = stream(app, reader_id)[-1]
    assert isinstance(closed, Reader.LoanClosed)
    assert (str(closed.loan_id), closed.how) == (loans[0].outcome["loan_id"], "lost")
    assert loans[0].outcome["loan_id"] not in reader(app, reader_id).open_loans
    assert len(reader(app, reader_id).open_loans) == 4
    borrow(app, CHENGDU, "B5", CHENGDU, reader_id)  # back under the limit
    # A lost item cannot be returned, borrowed or lost again.
    refused(dsn, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B0", CHENGDU))
    refused(
        dsn,
        ItemNotAvailable,
        lambda: app.declare_lost(
            owner=CHENGDU, barcode="B0", reason="again", library=CHENGDU, actor=desk(CHENGDU)
        ),
    )


def test_declare_lost_needs_an_involved_library(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        NotPermitted,
        lambda: app.declare_lost(
            owner=CHENGDU, barcode="B1", reason="?", library=JINJIANG, actor=desk(JINJIANG)
        ),
    )


def test_found(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        dsn,
        ItemNotLost,
        lambda: app.found(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU)),
    )
    app.declare_lost(
        owner=CHENGDU, barcode="B1", reason="not on shelf", library=CHENGDU, actor=desk(CHENGDU)
    )
    app.found(
        owner=CHENGDU, barcode="B1", library=YUZHONG, actor=desk(YUZHONG), command_id="found-1"
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location) == (Status.ON_SHELF, YUZHONG)
    event = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.Found)
    assert_envelope(event, library=YUZHONG, owner=CHENGDU, holding=CHENGDU, command_id="found-1")


def test_withdraw_a_lost_item(app: Circulation) -> None:
    register_item(app, CHENGDU, "B1")
    app.declare_lost(
        owner=CHENGDU, barcode="B1", reason="gone", library=CHENGDU, actor=desk(CHENGDU)
    )
    app.withdraw(
        owner=CHENGDU,
        barcode="B1",
        reason="written off",
        library=CHENGDU,
        actor=desk(CHENGDU),
        command_id="wd-1",
    )
    assert item(app, CHENGDU, "B1").status is Status.WITHDRAWN
    event = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.Withdrawn)
    assert_envelope(event, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="wd-1")


def test_correct_due_date(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    history = stream(app, item_id(CHENGDU, "B1"))
    borrowed = history[-1]
    assert isinstance(borrowed, Item.Borrowed)
    with psycopg.connect(dsn) as conn:
        raw_before = conn.execute(
            "SELECT originator_version, topic, state FROM circulation_events"
            " WHERE originator_id = %s ORDER BY originator_version",
            (item_id(CHENGDU, "B1"),),
        ).fetchall()

    new_due = (borrowed.due_at + timedelta(days=7)).astimezone(CONSORTIUM_TZ)
    result = app.correct(
        owner=CHENGDU,
        barcode="B1",
        corrects_version=borrowed.originator_version,
        reason="desk typed the wrong loan period",
        changes={"due_at": new_due.isoformat()},
        library=CHENGDU,
        actor=desk(CHENGDU),
        command_id="fix-1",
    )
    assert result.outcome["corrects_version"] == borrowed.originator_version
    state = item(app, CHENGDU, "B1")
    assert state.loan is not None
    assert state.loan.due_at == new_due
    assert state.loan.loan_id == borrowed.loan_id
    after = stream(app, item_id(CHENGDU, "B1"))
    assert len(after) == len(history) + 1
    corrected = after[-1]
    assert isinstance(corrected, Item.Corrected)
    assert corrected.corrects_version == borrowed.originator_version
    assert datetime.fromisoformat(corrected.changes["due_at"]) == new_due
    assert_envelope(corrected, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="fix-1")
    # History is intact: the corrected event is still there, byte for byte.
    with psycopg.connect(dsn) as conn:
        raw_after = conn.execute(
            "SELECT originator_version, topic, state FROM circulation_events"
            " WHERE originator_id = %s ORDER BY originator_version",
            (item_id(CHENGDU, "B1"),),
        ).fetchall()
    assert raw_after[: len(raw_before)] == raw_before
    assert after[-2].due_at == borrowed.due_at
    # Only some fields can be corrected, and only existing events.
    refused(
        dsn,
        InvalidInput,
        lambda: app.correct(
            owner=CHENGDU,
            barcode="B1",
            corrects_version=99,
            reason="x",
            changes={"title": "y"},
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="corrects_version",
    )
    refused(
        dsn,
        InvalidInput,
        lambda: app.correct(
            owner=CHENGDU,
            barcode="B1",
            corrects_version=1,
            reason="x",
            changes={"owner": YUZHONG},
            library=CHENGDU,
            actor=desk(CHENGDU),
        ),
        field="changes",
    )


def test_late_upload_keeps_its_occurred_at(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    when = (now() - timedelta(days=3)).astimezone(CONSORTIUM_TZ).replace(microsecond=0)
    result = borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=when)
    borrowed = stream(app, item_id(CHENGDU, "B1"))[-1]
    assert borrowed.occurred_at == when
    assert item(app, CHENGDU, "B1").since == when
    due = datetime.fromisoformat(result.outcome["due_at"]).astimezone(CONSORTIUM_TZ)
    assert (due.date() - when.date()).days == 30  # counted from when it happened
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT recorded_at FROM circulation_events WHERE notification_id = %s",
            (result.notification_ids[0],),
        ).fetchone()
    assert row is not None
    assert row[0] - when > timedelta(days=2)  # recorded now, occurred three days ago


def test_item_history_replays_to_the_same_state(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", YUZHONG)
    by_load = item(app, CHENGDU, "B1")
    by_repository = app.repository.get(item_id(CHENGDU, "B1"))
    assert isinstance(by_repository, Item)
    for name in ("status", "location", "loan", "transfer", "destination", "owner", "since"):
        assert getattr(by_load, name) == getattr(by_repository, name), name
    assert by_load.version == by_repository.version == 3  # registered, borrowed, returned


def test_a_closed_loan_cannot_be_renewed(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    loan_id = UUID(borrow(app, CHENGDU, "B1", CHENGDU, reader_id).outcome["loan_id"])
    give_back(app, CHENGDU, "B1", CHENGDU)
    refused(
        dsn,
        LoanClosed,
        lambda: app.renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU)),
    )


def test_unknown_loan_or_transfer_ids(app: Circulation, dsn: str) -> None:
    refused(
        dsn,
        UnknownLoan,
        lambda: app.renew(loan_id=uuid4(), library=CHENGDU, actor=desk(CHENGDU)),
    )
    refused(
        dsn,
        UnknownTransfer,
        lambda: app.receive(transfer_id=uuid4(), library=CHENGDU, actor=desk(CHENGDU)),
    )


@pytest.mark.parametrize(
    "code",
    ["SC-510100\n", "SC-٥١٠١٠٠", "SC-５１０１００", "sc-510100", "SC-510100-CC", "XX-510100"],
)
def test_library_codes_are_printable_ascii_codes(app: Circulation, dsn: str, code: str) -> None:
    refused(
        dsn,
        InvalidInput,
        lambda: app.join_library(
            code=code, name="某图书馆", region="sichuan", level="county", actor=ADMIN
        ),
        field="code",
    )

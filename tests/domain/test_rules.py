"""The circulation rules, without a database: every refusal has its own error and
records nothing; every accepted command records events that say when, where, by
whom, under which key, and which libraries own and hold the item.

The writer runs here on its in-memory unit of work (``tests/domain/conftest.py``);
what only PostgreSQL can show (the stored bytes, recorded_at, the event store's own
replay) is checked in ``tests/test_rules.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from ledger import commands as c
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
from tests.helpers import (
    ADMIN,
    CHENGDU,
    JINJIANG,
    MEIGU,
    YUZHONG,
    assert_envelope,
    borrow,
    desk,
    give_back,
    identity_number,
    item,
    now,
    reader,
    refused,
    register_item,
    register_reader,
    wrong_check_char,
)

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Writer


# ----------------------------------------------------------------------------- refusals


def test_unknown_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    error = refused(uow, UnknownLibrary, lambda: borrow(app, CHENGDU, "B1", "SC-510300", reader_id))
    assert error.field == "library"
    refused(
        uow,
        UnknownLibrary,
        lambda: app.execute(
            c.RegisterItem(owner="SC-510300", barcode="X", actor=desk("SC-510300"))
        ),
    )
    refused(
        uow,
        UnknownLibrary,
        lambda: app.execute(
            c.Dispatch(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                to_library="CQ-500104",
                actor=desk(CHENGDU),
            )
        ),
        field="to_library",
    )


def test_unknown_item(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(uow, UnknownItem, lambda: borrow(app, CHENGDU, "NO-SUCH", CHENGDU, reader_id))
    # Barcodes are unique only inside a library: B1 of Yuzhong is not B1 of Chengdu.
    refused(uow, UnknownItem, lambda: give_back(app, YUZHONG, "B1", YUZHONG))


def test_item_already_on_loan(app: Writer, uow: MemoryUnitOfWork) -> None:
    first, second = register_reader(app, 1), register_reader(app, 2)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, first)
    refused(uow, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", CHENGDU, second))
    refused(uow, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", CHENGDU, first))
    assert item(app, CHENGDU, "B1").loan.reader_id == first


def test_borrow_needs_the_item_on_shelf_at_the_borrowing_library(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(uow, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", YUZHONG, reader_id))


def test_return_of_item_not_on_loan(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(uow, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B1", CHENGDU))
    reader_id = register_reader(app, 1)
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", CHENGDU)
    refused(uow, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B1", CHENGDU))


def test_borrow_while_in_transit(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", YUZHONG)
    app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=YUZHONG, to_library=CHENGDU, actor=desk(YUZHONG)
        )
    )
    assert item(app, CHENGDU, "B1").status is Status.IN_TRANSIT
    for at in (CHENGDU, YUZHONG):
        refused(uow, ItemInTransit, lambda at=at: borrow(app, CHENGDU, "B1", at, reader_id))


def test_reader_over_the_limit(app: Writer, uow: MemoryUnitOfWork) -> None:
    assert app.loan_limit == 5
    reader_id = register_reader(app, 1)
    for n in range(6):
        register_item(app, CHENGDU, f"B{n}")
    for n in range(5):
        borrow(app, CHENGDU, f"B{n}", CHENGDU, reader_id)
    refused(uow, ReaderOverLimit, lambda: borrow(app, CHENGDU, "B5", CHENGDU, reader_id))
    assert item(app, CHENGDU, "B5").status is Status.ON_SHELF
    # Giving one back makes room again.
    give_back(app, CHENGDU, "B0", CHENGDU)
    borrow(app, CHENGDU, "B5", CHENGDU, reader_id)
    assert len(reader(app, reader_id).open_loans) == 5


def test_the_limit_is_consortium_wide(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    for n in range(3):
        register_item(app, CHENGDU, f"C{n}")
        register_item(app, YUZHONG, f"Y{n}")
    for n in range(3):
        borrow(app, CHENGDU, f"C{n}", CHENGDU, reader_id)
    for n in range(2):
        borrow(app, YUZHONG, f"Y{n}", YUZHONG, reader_id)
    refused(uow, ReaderOverLimit, lambda: borrow(app, YUZHONG, "Y2", YUZHONG, reader_id))


def test_blocked_reader(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1, home=CHENGDU)
    register_item(app, CHENGDU, "B1")
    # Only the home library (or the administrator) blocks a reader.
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.BlockReader(
                reader_id=reader_id, reason="unpaid", library=YUZHONG, actor=desk(YUZHONG)
            )
        ),
    )
    app.execute(
        c.BlockReader(reader_id=reader_id, reason="unpaid", library=CHENGDU, actor=desk(CHENGDU))
    )
    refused(uow, ReaderBlocked, lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id))
    app.execute(c.UnblockReader(reader_id=reader_id, library=CHENGDU, actor=desk(CHENGDU)))
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
def test_invalid_identity_number(
    app: Writer, uow: MemoryUnitOfWork, number: str, part: str
) -> None:
    def register() -> Any:
        return app.execute(
            c.RegisterReader(
                document="resident_id", number=number, library=CHENGDU, actor=desk(CHENGDU)
            )
        )

    error = refused(uow, InvalidIdentityNumber, register)
    assert isinstance(error, InvalidIdentityNumber)
    assert error.part == part
    assert error.field == "number"
    assert number not in error.message
    register_item(app, CHENGDU, "B1")
    error = refused(
        uow,
        InvalidIdentityNumber,
        lambda: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader=c.ReaderCard(number),
                actor=desk(CHENGDU),
            )
        ),
    )
    assert isinstance(error, InvalidIdentityNumber)
    assert error.part == part


def test_occurred_in_the_future(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    later = now() + timedelta(hours=1)
    refused(
        uow,
        OccurredInFuture,
        lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=later),
        field="occurred_at",
    )
    # Within the desk clock skew is fine.
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=now() + timedelta(seconds=30))


def test_naive_occurred_at(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    naive = datetime.now() - timedelta(minutes=5)
    refused(
        uow,
        InvalidInput,
        lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id, occurred_at=naive),
        field="occurred_at",
    )


def test_duplicate_item(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(uow, DuplicateItem, lambda: register_item(app, CHENGDU, "B1", title="other"))
    # The same barcode at another library is another item.
    register_item(app, YUZHONG, "B1")
    assert item(app, YUZHONG, "B1").owner == YUZHONG


def test_duplicate_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    refused(
        uow,
        DuplicateLibrary,
        lambda: app.execute(
            c.JoinLibrary(
                code=CHENGDU, name="另一个", region="sichuan", level="county", actor=ADMIN
            )
        ),
        field="code",
    )


def test_library_key_acting_for_another_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        WrongLibrary,
        lambda: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader_id=reader_id,
                actor=desk(YUZHONG),
            )
        ),
    )
    refused(
        uow,
        WrongLibrary,
        lambda: app.execute(c.RegisterItem(owner=CHENGDU, barcode="B2", actor=desk(YUZHONG))),
    )
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    refused(
        uow,
        WrongLibrary,
        lambda: app.execute(
            c.Return(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(JINJIANG))
        ),
    )


def test_only_the_administrator_registers_libraries(app: Writer, uow: MemoryUnitOfWork) -> None:
    newcomer = Actor(principal="key:SC-510500", library="SC-510500")
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.JoinLibrary(
                code="SC-510500",
                name="泸州市图书馆",
                region="sichuan",
                level="prefecture",
                actor=newcomer,
            )
        ),
    )
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.ChangePolicy(library=CHENGDU, policy={"loan_days": 90}, actor=desk(CHENGDU))
        ),
    )


def test_non_circulating_library_cannot_lend(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1, home=MEIGU)
    register_item(app, MEIGU, "M1")
    refused(uow, LibraryNotCirculating, lambda: borrow(app, MEIGU, "M1", MEIGU, reader_id))
    # Once the administrator lets it circulate, it lends.
    app.execute(c.ChangePolicy(library=MEIGU, policy={}, can_circulate=True, actor=ADMIN))
    borrow(app, MEIGU, "M1", MEIGU, reader_id)
    assert item(app, MEIGU, "M1").status is Status.ON_LOAN


def test_renewal_beyond_policy(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")  # Chengdu allows one renewal
    loan = borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    loan_id = UUID(loan.outcome["loan_id"])
    first = app.execute(c.Renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU)))
    assert first.outcome["renewals"] == 1
    assert datetime.fromisoformat(first.outcome["due_at"]) >= datetime.fromisoformat(
        loan.outcome["due_at"]
    )
    refused(
        uow,
        RenewalNotAllowed,
        lambda: app.execute(c.Renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU))),
    )
    assert item(app, CHENGDU, "B1").loan.renewals == 1


def test_receive_by_the_wrong_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
        )
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.Receive(transfer_id=transfer_id, library=JINJIANG, actor=desk(JINJIANG))
        ),
    )
    app.execute(c.Receive(transfer_id=transfer_id, library=YUZHONG, actor=desk(YUZHONG)))
    assert item(app, CHENGDU, "B1").location == YUZHONG


def test_dispatch_to_the_same_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        InvalidInput,
        lambda: app.execute(
            c.Dispatch(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                to_library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
        field="to_library",
    )


def test_dispatch_only_from_where_the_item_is(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        ItemNotAvailable,
        lambda: app.execute(
            c.Dispatch(
                owner=CHENGDU,
                barcode="B1",
                library=YUZHONG,
                to_library=JINJIANG,
                actor=desk(YUZHONG),
            )
        ),
    )


def test_withdraw_only_by_the_owner(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.Withdraw(
                owner=CHENGDU, barcode="B1", reason="worn", library=YUZHONG, actor=desk(YUZHONG)
            )
        ),
    )
    app.execute(
        c.Withdraw(owner=CHENGDU, barcode="B1", reason="worn", library=CHENGDU, actor=desk(CHENGDU))
    )
    assert item(app, CHENGDU, "B1").status is Status.WITHDRAWN
    reader_id = register_reader(app, 1)
    refused(uow, ItemWithdrawn, lambda: borrow(app, CHENGDU, "B1", CHENGDU, reader_id))


# --------------------------------------------------------------------------- happy paths


def test_borrow_records_the_envelope_and_both_aggregates(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    before = len(uow.events)
    result = borrow(app, CHENGDU, "B1", CHENGDU, reader_id, command_id="borrow-1")
    assert not result.replayed
    assert len(result.notification_ids) == 2  # Item.Borrowed and Reader.LoanOpened
    assert len(uow.events) == before + 2
    borrowed = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(borrowed, Item.Borrowed)
    assert_envelope(
        borrowed, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="borrow-1"
    )
    assert borrowed.reader_id == reader_id
    assert str(borrowed.loan_id) == result.outcome["loan_id"]
    opened = uow.stream(reader_id)[-1]
    assert isinstance(opened, Reader.LoanOpened)
    assert opened.loan_id == borrowed.loan_id
    assert opened.command_id == "borrow-1"
    # Chengdu lends for 30 days, ending at local midnight.
    due = borrowed.due_at.astimezone(CONSORTIUM_TZ)
    start = borrowed.occurred_at.astimezone(CONSORTIUM_TZ)
    assert (due.date() - start.date()).days == 30
    assert (due.hour, due.minute) == (23, 59)


def test_return_at_the_owner_shelves_it(app: Writer, uow: MemoryUnitOfWork) -> None:
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
    returned = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(returned, Item.Returned)
    assert returned.disposition == "shelve"
    assert_envelope(returned, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="ret-1")
    assert reader(app, reader_id).open_loans == {}
    closed = uow.stream(reader_id)[-1]
    assert isinstance(closed, Reader.LoanClosed)
    assert closed.how == "returned"


def test_return_elsewhere_goes_back_to_the_owner(app: Writer, uow: MemoryUnitOfWork) -> None:
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
    returned = uow.stream(item_id(CHENGDU, "B1"))[-1]
    # acting Yuzhong; the lending (holding) desk was Chengdu's
    assert_envelope(returned, library=YUZHONG, owner=CHENGDU, holding=CHENGDU, command_id="ret-y")
    assert returned.borrowed_at_library == CHENGDU
    # Nobody can borrow it while it waits to go home, not even where it sits.
    other = register_reader(app, 2)
    refused(uow, ItemNotAvailable, lambda: borrow(app, CHENGDU, "B1", YUZHONG, other))

    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode="B1",
            library=YUZHONG,
            to_library=CHENGDU,
            actor=desk(YUZHONG),
            command_id="send-1",
        )
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    state = item(app, CHENGDU, "B1")
    assert state.status is Status.IN_TRANSIT
    assert state.transfer is not None
    assert (state.transfer.from_library, state.transfer.to_library) == (YUZHONG, CHENGDU)
    dispatched = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(dispatched, Item.TransferDispatched)
    assert_envelope(
        dispatched, library=YUZHONG, owner=CHENGDU, holding=YUZHONG, command_id="send-1"
    )

    app.execute(
        c.Receive(transfer_id=transfer_id, library=CHENGDU, actor=desk(CHENGDU), command_id="rcv-1")
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.transfer, state.destination) == (
        Status.ON_SHELF,
        CHENGDU,
        None,
        None,
    )
    received = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(received, Item.TransferReceived)
    # in transit, the sender stays the custodian until the receiver signs
    assert_envelope(received, library=CHENGDU, owner=CHENGDU, holding=YUZHONG, command_id="rcv-1")
    borrow(app, CHENGDU, "B1", CHENGDU, other)


def test_in_transit_item_keeps_no_stale_destination(app: Writer) -> None:
    """``destination`` means "where an AWAITING_TRANSFER item must go" (items.py); once the
    item is shipped the open transfer says where it goes, and a cancellation restores it."""
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B1", YUZHONG)
    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=YUZHONG, to_library=CHENGDU, actor=desk(YUZHONG)
        )
    )
    state = item(app, CHENGDU, "B1")
    assert state.status is Status.IN_TRANSIT
    assert state.destination is None, "an item in transit still has an awaiting destination"
    app.execute(
        c.CancelTransfer(
            transfer_id=UUID(sent.outcome["transfer_id"]),
            reason="plan_changed",
            library=YUZHONG,
            actor=desk(YUZHONG),
        )
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.destination) == (Status.AWAITING_TRANSFER, CHENGDU)


def test_floating_item_stays_and_circulates_where_returned(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
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
    returned = uow.stream(item_id(JINJIANG, "F1"))[-1]
    assert returned.disposition == "float"
    assert_envelope(
        returned, library=YUZHONG, owner=JINJIANG, holding=JINJIANG, command_id="float-1"
    )
    # It now circulates at Yuzhong under Yuzhong's loan period (21 days) ...
    loan = borrow(app, JINJIANG, "F1", YUZHONG, second, command_id="float-2")
    borrowed = uow.stream(item_id(JINJIANG, "F1"))[-1]
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


def test_the_owner_policy_decides_not_the_returning_library(app: Writer) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")  # Chengdu wants it back
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    # Jinjiang floats its own items, but this one is Chengdu's.
    assert give_back(app, CHENGDU, "B1", JINJIANG).outcome["disposition"] == "transfer_to_owner"


@pytest.mark.parametrize("prior", ["on_shelf", "awaiting_transfer"])
def test_cancelled_transfer_restores_the_prior_state(
    app: Writer, uow: MemoryUnitOfWork, prior: str
) -> None:
    register_item(app, CHENGDU, "B1")
    if prior == "awaiting_transfer":
        reader_id = register_reader(app, 1)
        borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
        give_back(app, CHENGDU, "B1", YUZHONG)
        origin, target = YUZHONG, CHENGDU
    else:
        origin, target = CHENGDU, YUZHONG
    before = item(app, CHENGDU, "B1")
    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=origin, to_library=target, actor=desk(origin)
        )
    )
    transfer_id = UUID(sent.outcome["transfer_id"])
    result = app.execute(
        c.CancelTransfer(
            transfer_id=transfer_id,
            reason="dispatched_in_error",
            note="wrong crate",
            library=origin,
            actor=desk(origin),
            command_id="cancel-1",
        )
    )
    assert result.outcome["status"] == prior
    after = item(app, CHENGDU, "B1")
    assert (after.status, after.location, after.destination, after.transfer) == (
        before.status,
        before.location,
        before.destination,
        None,
    )
    cancelled = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(cancelled, Item.TransferCancelled)
    assert (cancelled.transfer_id, cancelled.reason, cancelled.note) == (
        transfer_id,
        "dispatched_in_error",
        "wrong crate",
    )
    assert_envelope(cancelled, library=origin, owner=CHENGDU, holding=origin, command_id="cancel-1")


def test_cancel_with_unknown_reason_records_nothing(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
        )
    )
    refused(
        uow,
        InvalidInput,
        lambda: app.execute(
            c.CancelTransfer(
                transfer_id=UUID(sent.outcome["transfer_id"]),
                reason="bored",
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
        field="reason",
    )
    assert item(app, CHENGDU, "B1").status is Status.IN_TRANSIT


def test_received_unannounced(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    # Already on shelf right here: nothing to receive.
    refused(
        uow,
        ItemNotAvailable,
        lambda: app.execute(
            c.ReceiveUnannounced(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU))
        ),
    )
    sent = app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
        )
    )
    # It turns up at Jinjiang instead of Yuzhong.
    app.execute(
        c.ReceiveUnannounced(
            owner=CHENGDU,
            barcode="B1",
            library=JINJIANG,
            note="in the wrong van",
            actor=desk(JINJIANG),
            command_id="unann-1",
        )
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location, state.transfer) == (Status.ON_SHELF, JINJIANG, None)
    event = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.ReceivedUnannounced)
    assert str(event.superseded_transfer_id) == sent.outcome["transfer_id"]
    assert event.previous_status == "in_transit"
    assert_envelope(event, library=JINJIANG, owner=CHENGDU, holding=CHENGDU, command_id="unann-1")
    # The superseded transfer cannot be received any more.
    with pytest.raises(DomainError):
        app.execute(
            c.Receive(
                transfer_id=UUID(sent.outcome["transfer_id"]), library=YUZHONG, actor=desk(YUZHONG)
            )
        )


def test_declare_lost_on_loan_closes_the_readers_loan(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    for n in range(6):
        register_item(app, CHENGDU, f"B{n}")
    loans = [borrow(app, CHENGDU, f"B{n}", CHENGDU, reader_id) for n in range(5)]
    refused(uow, ReaderOverLimit, lambda: borrow(app, CHENGDU, "B5", CHENGDU, reader_id))
    result = app.execute(
        c.DeclareLost(
            owner=CHENGDU,
            barcode="B0",
            reason="reader reports it lost",
            library=CHENGDU,
            actor=desk(CHENGDU),
            command_id="lost-1",
        )
    )
    assert result.outcome["loan_id"] == loans[0].outcome["loan_id"]
    state = item(app, CHENGDU, "B0")
    assert (state.status, state.loan, state.transfer) == (Status.LOST, None, None)
    lost = uow.stream(item_id(CHENGDU, "B0"))[-1]
    assert isinstance(lost, Item.DeclaredLost)
    assert (str(lost.loan_id), lost.reader_id) == (loans[0].outcome["loan_id"], reader_id)
    assert_envelope(lost, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="lost-1")
    closed = uow.stream(reader_id)[-1]
    assert isinstance(closed, Reader.LoanClosed)
    assert (str(closed.loan_id), closed.how) == (loans[0].outcome["loan_id"], "lost")
    assert loans[0].outcome["loan_id"] not in reader(app, reader_id).open_loans
    assert len(reader(app, reader_id).open_loans) == 4
    borrow(app, CHENGDU, "B5", CHENGDU, reader_id)  # back under the limit
    # A lost item cannot be returned, borrowed or lost again.
    refused(uow, ItemNotOnLoan, lambda: give_back(app, CHENGDU, "B0", CHENGDU))
    refused(
        uow,
        ItemNotAvailable,
        lambda: app.execute(
            c.DeclareLost(
                owner=CHENGDU, barcode="B0", reason="again", library=CHENGDU, actor=desk(CHENGDU)
            )
        ),
    )


def test_declare_lost_needs_an_involved_library(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(
            c.DeclareLost(
                owner=CHENGDU, barcode="B1", reason="?", library=JINJIANG, actor=desk(JINJIANG)
            )
        ),
    )


def test_found(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    refused(
        uow,
        ItemNotLost,
        lambda: app.execute(
            c.Found(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU))
        ),
    )
    app.execute(
        c.DeclareLost(
            owner=CHENGDU, barcode="B1", reason="not on shelf", library=CHENGDU, actor=desk(CHENGDU)
        )
    )
    app.execute(
        c.Found(
            owner=CHENGDU, barcode="B1", library=YUZHONG, actor=desk(YUZHONG), command_id="found-1"
        )
    )
    state = item(app, CHENGDU, "B1")
    assert (state.status, state.location) == (Status.ON_SHELF, YUZHONG)
    event = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.Found)
    assert_envelope(event, library=YUZHONG, owner=CHENGDU, holding=CHENGDU, command_id="found-1")


def test_withdraw_a_lost_item(app: Writer, uow: MemoryUnitOfWork) -> None:
    register_item(app, CHENGDU, "B1")
    app.execute(
        c.DeclareLost(
            owner=CHENGDU, barcode="B1", reason="gone", library=CHENGDU, actor=desk(CHENGDU)
        )
    )
    app.execute(
        c.Withdraw(
            owner=CHENGDU,
            barcode="B1",
            reason="written off",
            library=CHENGDU,
            actor=desk(CHENGDU),
            command_id="wd-1",
        )
    )
    assert item(app, CHENGDU, "B1").status is Status.WITHDRAWN
    event = uow.stream(item_id(CHENGDU, "B1"))[-1]
    assert isinstance(event, Item.Withdrawn)
    assert_envelope(event, library=CHENGDU, owner=CHENGDU, holding=CHENGDU, command_id="wd-1")


def test_a_closed_loan_cannot_be_renewed(app: Writer, uow: MemoryUnitOfWork) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    loan_id = UUID(borrow(app, CHENGDU, "B1", CHENGDU, reader_id).outcome["loan_id"])
    give_back(app, CHENGDU, "B1", CHENGDU)
    refused(
        uow,
        LoanClosed,
        lambda: app.execute(c.Renew(loan_id=loan_id, library=CHENGDU, actor=desk(CHENGDU))),
    )


def test_unknown_loan_or_transfer_ids(app: Writer, uow: MemoryUnitOfWork) -> None:
    refused(
        uow,
        UnknownLoan,
        lambda: app.execute(c.Renew(loan_id=uuid4(), library=CHENGDU, actor=desk(CHENGDU))),
    )
    refused(
        uow,
        UnknownTransfer,
        lambda: app.execute(c.Receive(transfer_id=uuid4(), library=CHENGDU, actor=desk(CHENGDU))),
    )


@pytest.mark.parametrize(
    "code",
    ["SC-510100\n", "SC-٥١٠١٠٠", "SC-５１０１００", "sc-510100", "SC-510100-CC", "XX-510100"],
)
def test_library_codes_are_printable_ascii_codes(
    app: Writer, uow: MemoryUnitOfWork, code: str
) -> None:
    refused(
        uow,
        InvalidInput,
        lambda: app.execute(
            c.JoinLibrary(code=code, name="某图书馆", region="sichuan", level="county", actor=ADMIN)
        ),
        field="code",
    )

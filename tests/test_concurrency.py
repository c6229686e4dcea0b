"""Concurrent commands on one item (or one reader) against a real PostgreSQL: one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import item_id
from ledger.domain.errors import (
    ConcurrencyConflict,
    ItemNotAvailable,
    ItemNotOnLoan,
    ReaderOverLimit,
)
from ledger.domain.items import Item, Status
from ledger.domain.readers import Reader
from ledger.write import Result
from tests.conftest import open_ledger
from tests.helpers import (
    CHENGDU,
    YUZHONG,
    count_events,
    desk,
    join_all,
    register_item,
    register_reader,
    stream,
    topics,
)

THREADS = 16


def race(count: int, action: Callable[[int], Result]) -> list[Result | BaseException]:
    """Start ``count`` threads at one barrier; collect each one's answer or error."""
    barrier = threading.Barrier(count)
    answers: list[Result | BaseException | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = action(index)
        except BaseException as error:  # collected and asserted on by the caller
            answers[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(a is not None for a in answers), "a thread did not finish"
    return [a for a in answers if a is not None]


def split(
    answers: list[Result | BaseException],
) -> tuple[list[tuple[int, Result]], list[tuple[int, BaseException]]]:
    wins = [(i, a) for i, a in enumerate(answers) if isinstance(a, Result)]
    losses = [(i, a) for i, a in enumerate(answers) if isinstance(a, BaseException)]
    return wins, losses


def assert_one_borrow(app: Circulation, dsn: str, readers: list[UUID], winner: int) -> None:
    item = app.load([item_id(CHENGDU, "B1")])[item_id(CHENGDU, "B1")]
    assert isinstance(item, Item)
    assert item.status is Status.ON_LOAN
    assert item.loan is not None
    assert item.loan.reader_id == readers[winner]
    loaded = app.load(readers)
    for index, reader_id in enumerate(readers):
        reader = loaded[reader_id]
        assert isinstance(reader, Reader)
        expected = {str(item.loan.loan_id): item.id} if index == winner else {}
        assert reader.open_loans == expected, index
    stored = topics(dsn)
    assert stored["Item.Borrowed"] == 1
    assert stored["Reader.LoanOpened"] == 1


def _consortium(app: Circulation, readers: int) -> list[UUID]:
    join_all(app)
    register_item(app, CHENGDU, "B1")
    return [register_reader(app, 100 + n) for n in range(readers)]


def test_sixteen_readers_one_item(ledger: Circulation, dsn: str) -> None:
    readers = _consortium(ledger, THREADS)
    events = count_events(dsn)
    answers = race(
        THREADS,
        lambda i: ledger.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader_id=readers[i],
                actor=desk(CHENGDU),
            )
        ),
    )
    wins, losses = split(answers)
    assert len(wins) == 1, wins
    for _, error in losses:
        assert isinstance(error, ItemNotAvailable | ConcurrencyConflict), repr(error)
    assert count_events(dsn) == events + 2
    winner, result = wins[0]
    assert result.outcome["reader_id"] == str(readers[winner])
    assert_one_borrow(ledger, dsn, readers, winner)


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "single"])
def test_two_processes_one_item(dsn: str, group_commit: bool) -> None:
    """Two Circulation instances (two pools, as two worker processes would have)."""
    apps = [open_ledger(dsn, group_commit=group_commit) for _ in range(2)]
    try:
        readers = _consortium(apps[0], THREADS)
        events = count_events(dsn)
        answers = race(
            THREADS,
            lambda i: apps[i % 2].execute(
                c.Borrow(
                    owner=CHENGDU,
                    barcode="B1",
                    library=CHENGDU,
                    reader_id=readers[i],
                    actor=desk(CHENGDU),
                )
            ),
        )
        wins, losses = split(answers)
        assert len(wins) == 1, wins
        for _, error in losses:
            assert isinstance(error, ItemNotAvailable | ConcurrencyConflict), repr(error)
        assert count_events(dsn) == events + 2
        # Both instances now read the same state.
        for app in apps:
            assert_one_borrow(app, dsn, readers, wins[0][0])
    finally:
        for app in apps:
            app.close()


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "single"])
def test_a_cached_state_sees_what_another_instance_recorded_since(
    dsn: str, group_commit: bool
) -> None:
    """Instance B has the item cached as on loan; A records the return; B must lend it
    again (a stale cache would refuse: "on loan") and know the reader's loan has ended."""
    a, b = (open_ledger(dsn, group_commit=group_commit) for _ in range(2))
    try:
        readers = _consortium(a, 2)
        home = desk(CHENGDU)
        b.execute(
            c.Borrow(owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=readers[0], actor=home)
        )
        a.execute(c.Return(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=home))
        again = b.execute(
            c.Borrow(owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=readers[1], actor=home)
        )
        assert again.outcome["reader_id"] == str(readers[1])
        first = b.load([readers[0]])[readers[0]]
        assert isinstance(first, Reader) and not first.open_loans
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "single"])
def test_two_processes_repeated_races(dsn: str, group_commit: bool) -> None:
    """Several rounds of borrow/return races between two instances: never two loans."""
    apps = [open_ledger(dsn, group_commit=group_commit) for _ in range(2)]
    try:
        readers = _consortium(apps[0], 4)
        for round_ in range(5):
            answers = race(
                4,
                lambda i: apps[i % 2].execute(
                    c.Borrow(
                        owner=CHENGDU,
                        barcode="B1",
                        library=CHENGDU,
                        reader_id=readers[i],
                        actor=desk(CHENGDU),
                    )
                ),
            )
            wins, losses = split(answers)
            assert len(wins) == 1, (round_, wins)
            assert all(isinstance(e, ItemNotAvailable | ConcurrencyConflict) for _, e in losses), (
                losses
            )
            # Two desks scan the same return at once: exactly one return is recorded.
            returns = race(
                2,
                lambda i: apps[i].execute(
                    c.Return(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU))
                ),
            )
            won, lost = split(returns)
            assert len(won) == 1, (round_, returns)
            assert all(isinstance(e, ItemNotOnLoan | ConcurrencyConflict) for _, e in lost), lost
        stored = topics(dsn)
        assert stored["Item.Borrowed"] == stored["Item.Returned"] == 5
        assert stored["Reader.LoanOpened"] == stored["Reader.LoanClosed"] == 5
    finally:
        for app in apps:
            app.close()


def test_one_reader_many_desks_stays_under_the_limit(ledger: Circulation, dsn: str) -> None:
    """The limit is a rule on the reader: concurrent borrows of different items cannot
    together pass it. Desks retry on a conflict, so exactly ``loan_limit`` loans open."""
    join_all(ledger)
    reader_id = register_reader(ledger, 1)
    count = 12
    places = [CHENGDU, YUZHONG] * (count // 2)
    for n in range(count):
        register_item(ledger, places[n], f"B{n}")

    def borrow_with_retries(i: int) -> Result:
        for _ in range(50):
            try:
                return ledger.execute(
                    c.Borrow(
                        owner=places[i],
                        barcode=f"B{i}",
                        library=places[i],
                        reader_id=reader_id,
                        actor=desk(places[i]),
                    )
                )
            except ConcurrencyConflict:
                continue
        raise AssertionError("still conflicting after 50 tries")

    answers = race(count, borrow_with_retries)
    wins, losses = split(answers)
    assert len(wins) == ledger.loan_limit
    for _, error in losses:
        assert isinstance(error, ReaderOverLimit), repr(error)
    reader = ledger.load([reader_id])[reader_id]
    assert isinstance(reader, Reader)
    assert len(reader.open_loans) == ledger.loan_limit
    assert topics(dsn)["Item.Borrowed"] == ledger.loan_limit
    on_loan = {
        n
        for n in range(count)
        if (item := ledger.get_item(places[n], f"B{n}")) is not None
        and item.status is Status.ON_LOAN
    }
    assert on_loan == {_index(r, places) for _, r in wins}
    assert {UUID(r.outcome["loan_id"]) for _, r in wins} == {UUID(k) for k in reader.open_loans}


def _index(result: Result, places: list[str]) -> int:
    for n, place in enumerate(places):
        if result.outcome["item_id"] == str(item_id(place, f"B{n}")):
            return n
    raise AssertionError(result)


def test_racing_return_and_declare_lost(ledger: Circulation, dsn: str) -> None:
    """A return and a loss report for the same loan: the loan ends exactly once."""
    readers = _consortium(ledger, 1)
    ledger.execute(
        c.Borrow(
            owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=readers[0], actor=desk(CHENGDU)
        )
    )
    actions: list[Callable[[], Any]] = [
        lambda: ledger.execute(
            c.Return(owner=CHENGDU, barcode="B1", library=YUZHONG, actor=desk(YUZHONG))
        ),
        lambda: ledger.execute(
            c.DeclareLost(
                owner=CHENGDU,
                barcode="B1",
                reason="reader says so",
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
    ]
    answers = race(2, lambda i: actions[i]())
    wins, _ = split(answers)
    assert wins, answers  # the return, or the loss, or both (lost after being returned)
    history = stream(ledger, item_id(CHENGDU, "B1"))
    endings = [
        e
        for e in history
        if isinstance(e, Item.Returned)
        or (isinstance(e, Item.DeclaredLost) and e.loan_id is not None)
    ]
    assert len(endings) == 1, endings
    assert topics(dsn)["Reader.LoanClosed"] == 1
    reader = ledger.load(readers)[readers[0]]
    assert isinstance(reader, Reader)
    assert reader.open_loans == {}

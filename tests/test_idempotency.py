"""Retries against PostgreSQL: the same command_id sent at once from threads and from two
processes records one command; one person registered at once is one reader.

A single retry's answer and a reused key's refusal are checked without a database, in
``tests/domain/test_idempotency.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.errors import ConcurrencyConflict, DomainError
from ledger.write import Result
from tests.conftest import open_ledger
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    YUZHONG,
    count_events,
    count_rows,
    desk,
    identity_number,
    join_all,
    now,
    register_item,
    register_reader,
    topics,
)


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    join_all(ledger)
    yield ledger


def _race(count: int, action: Callable[[int], Result]) -> list[Result | BaseException]:
    barrier = threading.Barrier(count)
    answers: list[Result | BaseException | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = action(index)
        except BaseException as error:  # collected and asserted on below
            answers[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(answer is not None for answer in answers), "a thread did not finish"
    return [a for a in answers if a is not None]


def test_same_key_from_eight_threads(app: Circulation, dsn: str) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    when = now() - timedelta(minutes=1)
    events = count_events(dsn)

    answers = _race(
        8,
        lambda _: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader_id=reader_id,
                actor=desk(CHENGDU),
                command_id="same-key",
                occurred_at=when,
            )
        ),
    )
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, f"retries of one command got errors: {[repr(e) for e in errors]}"
    results = [a for a in answers if isinstance(a, Result)]
    assert sum(not r.replayed for r in results) == 1
    assert len({r.outcome["loan_id"] for r in results}) == 1
    assert len({r.notification_ids for r in results}) == 1
    assert count_events(dsn) == events + 2  # one Item.Borrowed, one Reader.LoanOpened
    assert topics(dsn)["Item.Borrowed"] == 1


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "single"])
def test_same_key_from_two_processes(dsn: str, group_commit: bool) -> None:
    """A load balancer may send the retry to another worker while the first still runs."""
    first, second = (open_ledger(dsn, group_commit=group_commit) for _ in range(2))
    try:
        join_all(first)
        reader_id = register_reader(first, 1)
        register_item(first, CHENGDU, "B1")
        when = now() - timedelta(minutes=1)
        events = count_events(dsn)
        apps = [first, second] * 4
        answers = _race(
            8,
            lambda i: apps[i].execute(
                c.Borrow(
                    owner=CHENGDU,
                    barcode="B1",
                    library=CHENGDU,
                    reader_id=reader_id,
                    actor=desk(CHENGDU),
                    command_id="same-key",
                    occurred_at=when,
                )
            ),
        )
        errors = [a for a in answers if isinstance(a, BaseException)]
        assert not errors, f"retries of one command got errors: {[repr(e) for e in errors]}"
        results = [a for a in answers if isinstance(a, Result)]
        assert len({r.outcome["loan_id"] for r in results}) == 1
        assert sum(not r.replayed for r in results) == 1
        assert count_events(dsn) == events + 2
    finally:
        first.close()
        second.close()


def test_concurrent_distinct_keys_are_not_confused(app: Circulation, dsn: str) -> None:
    """Eight different commands at once: each gets its own answer and its own events."""
    for n in range(8):
        register_item(app, CHENGDU, f"B{n}")
    readers = [register_reader(app, 10 + n) for n in range(8)]
    events = count_events(dsn)
    answers = _race(
        8,
        lambda i: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode=f"B{i}",
                library=CHENGDU,
                reader_id=readers[i],
                actor=desk(CHENGDU),
                command_id=f"key-{i}",
            )
        ),
    )
    results = [a for a in answers if isinstance(a, Result)]
    assert len(results) == 8, [a for a in answers if isinstance(a, BaseException)]
    assert {r.command_id for r in results} == {f"key-{i}" for i in range(8)}
    assert len({r.outcome["loan_id"] for r in results}) == 8
    assert all(len(r.notification_ids) == 2 for r in results)
    assert len({n for r in results for n in r.notification_ids}) == 16
    assert count_events(dsn) == events + 16
    for result in results:
        barcode = f"B{int(result.command_id.split('-')[1])}"
        assert result.outcome["item_id"] == str(app.get_item(CHENGDU, barcode).id)


def test_one_person_two_documents_is_one_reader(app: Circulation, dsn: str) -> None:
    number = identity_number(5, region="500103")
    by_id_card = app.execute(
        c.RegisterReader(
            document="resident_id", number=number, library=CHENGDU, actor=desk(CHENGDU)
        )
    )
    assert by_id_card.outcome["created"] is True
    events = count_events(dsn)
    # The social security card carries the same number; typed with spaces, lower-case x.
    typed = f"{number[:6]} {number[6:14]} {number[14:]}".lower()
    by_ss_card = app.execute(
        c.RegisterReader(
            document="social_security_card", number=typed, library=YUZHONG, actor=desk(YUZHONG)
        )
    )
    assert by_ss_card.outcome["reader_id"] == by_id_card.outcome["reader_id"]
    assert by_ss_card.outcome["created"] is False
    assert by_ss_card.outcome["masked_number"] == by_id_card.outcome["masked_number"]
    assert count_events(dsn) == events
    assert topics(dsn)["Reader.Registered"] == 1
    assert count_rows(dsn, "reader_identities") == 1
    assert app.find_reader(number) == UUID(by_id_card.outcome["reader_id"])


def test_one_person_registered_concurrently_is_one_reader(app: Circulation, dsn: str) -> None:
    number = identity_number(6)
    documents = ["resident_id", "social_security_card"] * 4
    libraries = [CHENGDU, YUZHONG, JINJIANG, CHENGDU] * 2
    answers = _race(
        8,
        lambda i: app.execute(
            c.RegisterReader(
                document=documents[i],
                number=number,
                library=libraries[i],
                actor=desk(libraries[i]),
            )
        ),
    )
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert all(isinstance(e, ConcurrencyConflict | DomainError) for e in errors), errors
    results = [a for a in answers if isinstance(a, Result)]
    assert not errors, f"registering one person concurrently failed: {errors!r}"
    assert len({r.outcome["reader_id"] for r in results}) == 1
    assert sum(r.outcome["created"] for r in results) == 1
    assert topics(dsn)["Reader.Registered"] == 1
    assert count_rows(dsn, "reader_identities") == 1

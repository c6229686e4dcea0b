"""Retries, without a database: the same command_id answers with the original outcome
and records nothing new; the same key on another command is refused.

Retries racing each other (threads, two processes) and the reader identities table
stay in ``tests/test_idempotency.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.domain.errors import IdempotencyKeyReused
from tests.helpers import (
    ADMIN,
    CHENGDU,
    JINJIANG,
    YUZHONG,
    desk,
    identity_number,
    now,
    register_item,
    register_reader,
)

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Result, Writer


def _borrow(app: Writer, **kw: Any) -> Result:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    return app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=reader_id,
            actor=desk(CHENGDU),
            **kw,
        )
    )


def _return(app: Writer, **kw: Any) -> Result:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    app.execute(
        c.Borrow(
            owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=reader_id, actor=desk(CHENGDU)
        )
    )
    return app.execute(
        c.Return(owner=CHENGDU, barcode="B1", library=YUZHONG, actor=desk(YUZHONG), **kw)
    )


def _dispatch(app: Writer, **kw: Any) -> Result:
    register_item(app, CHENGDU, "B1")
    return app.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            to_library=JINJIANG,
            actor=desk(CHENGDU),
            **kw,
        )
    )


def _register_item(app: Writer, **kw: Any) -> Result:
    return app.execute(
        c.RegisterItem(owner=CHENGDU, barcode="NEW", title="活着", actor=desk(CHENGDU), **kw)
    )


def _register_reader(app: Writer, **kw: Any) -> Result:
    return app.execute(
        c.RegisterReader(
            document="resident_id",
            number=identity_number(42),
            library=CHENGDU,
            actor=desk(CHENGDU),
            **kw,
        )
    )


def _join_library(app: Writer, **kw: Any) -> Result:
    return app.execute(
        c.JoinLibrary(
            code="CQ-500104",
            name="大渡口区图书馆",
            region="chongqing",
            level="county",
            actor=ADMIN,
            **kw,
        )
    )


COMMANDS: dict[str, Callable[..., Result]] = {
    "borrow": _borrow,
    "return": _return,
    "dispatch": _dispatch,
    "register_item": _register_item,
    "register_reader": _register_reader,
    "join_library": _join_library,
}


def _again(app: Writer, name: str, first: Result, **kw: Any) -> Result:
    """Send the last step of a COMMANDS scenario (which answered ``first``) once more,
    without its set-up."""
    if name == "borrow":
        reader_id = UUID(first.outcome["reader_id"])
        return app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader_id=reader_id,
                actor=desk(CHENGDU),
                **kw,
            )
        )
    if name == "return":
        return app.execute(
            c.Return(owner=CHENGDU, barcode="B1", library=YUZHONG, actor=desk(YUZHONG), **kw)
        )
    if name == "dispatch":
        return app.execute(
            c.Dispatch(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                to_library=JINJIANG,
                actor=desk(CHENGDU),
                **kw,
            )
        )
    return COMMANDS[name](app, **kw)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_retry_replays_the_original_outcome(app: Writer, uow: MemoryUnitOfWork, name: str) -> None:
    envelope = {"command_id": f"retry-{name}", "occurred_at": now() - timedelta(minutes=1)}
    first = COMMANDS[name](app, **envelope)
    assert not first.replayed
    assert first.notification_ids
    events, log = len(uow.events), len(uow.command_log)

    second = _again(app, name, first, **envelope)
    assert second.replayed
    assert second.command_id == first.command_id
    assert second.outcome == first.outcome
    assert second.notification_ids == first.notification_ids
    assert (len(uow.events), len(uow.command_log)) == (events, log)

    third = _again(app, name, first, **envelope)
    assert (third.replayed, third.outcome, third.notification_ids) == (
        True,
        first.outcome,
        first.notification_ids,
    )
    assert len(uow.events) == events


def test_retry_without_occurred_at_replays(app: Writer, uow: MemoryUnitOfWork) -> None:
    """A desk that leaves occurred_at out (meaning "now") and retries after a timeout
    sends the very same request: it must get the original answer, not a reused-key error."""
    first = _borrow(app, command_id="retry-now")
    events = len(uow.events)
    second = _again(app, "borrow", first, command_id="retry-now")
    assert second.replayed
    assert second.outcome == first.outcome
    assert second.notification_ids == first.notification_ids
    assert len(uow.events) == events


def test_same_key_different_content_is_refused(app: Writer, uow: MemoryUnitOfWork) -> None:
    when = now() - timedelta(minutes=1)
    first = _borrow(app, command_id="k-1", occurred_at=when)
    register_item(app, CHENGDU, "B2")
    other = register_reader(app, 2)
    events, log = len(uow.events), len(uow.command_log)
    attempts: list[Callable[[], Result]] = [
        # another item under the same key
        lambda: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B2",
                library=CHENGDU,
                reader_id=other,
                actor=desk(CHENGDU),
                command_id="k-1",
                occurred_at=when,
            )
        ),
        # another kind of command under the same key
        lambda: app.execute(
            c.RegisterItem(
                owner=CHENGDU, barcode="B3", actor=desk(CHENGDU), command_id="k-1", occurred_at=when
            )
        ),
        # the same borrow, but another moment
        lambda: app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B1",
                library=CHENGDU,
                reader_id=UUID(first.outcome["reader_id"]),
                actor=desk(CHENGDU),
                command_id="k-1",
                occurred_at=when - timedelta(minutes=5),
            )
        ),
    ]
    for attempt in attempts:
        with pytest.raises(IdempotencyKeyReused) as caught:
            attempt()
        assert caught.value.field == "command_id"
        assert (len(uow.events), len(uow.command_log)) == (events, log)
    item = app.get_item(CHENGDU, "B2")
    assert item is not None
    assert item.status == "on_shelf"

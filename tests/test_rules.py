"""The circulation rules where only PostgreSQL can show them: a correction leaves the
stored history byte for byte, a late upload keeps its occurred_at beside the
recorded_at the database stamps, and the event store replays to the writer's state.

Every other rule is checked without a database, in ``tests/domain/test_rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import CONSORTIUM_TZ, item_id
from ledger.domain.errors import InvalidInput
from ledger.domain.items import Item
from ledger.eventlog import fold
from tests.helpers import (
    CHENGDU,
    YUZHONG,
    assert_envelope,
    borrow,
    desk,
    give_back,
    item,
    join_all,
    now,
    refused,
    register_item,
    register_reader,
    stream,
)


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    """The ledger with the four test libraries joined."""
    join_all(ledger)
    yield ledger


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
    result = app.execute(
        c.Correct(
            owner=CHENGDU,
            barcode="B1",
            corrects_version=borrowed.originator_version,
            reason="desk typed the wrong loan period",
            changes={"due_at": new_due.isoformat()},
            library=CHENGDU,
            actor=desk(CHENGDU),
            command_id="fix-1",
        )
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
        lambda: app.execute(
            c.Correct(
                owner=CHENGDU,
                barcode="B1",
                corrects_version=99,
                reason="x",
                changes={"title": "y"},
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
        field="corrects_version",
    )
    refused(
        dsn,
        InvalidInput,
        lambda: app.execute(
            c.Correct(
                owner=CHENGDU,
                barcode="B1",
                corrects_version=1,
                reason="x",
                changes={"owner": YUZHONG},
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
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
    # replayed from the stored events, as eventsourcing's repository did
    by_repository = fold(stream(app, item_id(CHENGDU, "B1")))
    assert isinstance(by_repository, Item)
    for name in ("status", "location", "loan", "transfer", "destination", "owner", "since"):
        assert getattr(by_load, name) == getattr(by_repository, name), name
    assert by_load.version == by_repository.version == 3  # registered, borrowed, returned

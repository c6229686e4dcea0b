"""The stored events and the rows beside them: append-only history, the command log,
and reader identities kept only as keyed hashes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import item_id
from ledger.domain.errors import ItemNotAvailable, ReaderBlocked, UnknownReader
from ledger.domain.identity import IdentityHasher, parse_identity_number
from ledger.domain.readers import Reader
from tests.conftest import ADMIN, IDENTITY_KEY
from tests.helpers import (
    CHENGDU,
    YUZHONG,
    count_events,
    count_rows,
    desk,
    identity_number,
    join_all,
    now,
    register_item,
    stream,
    topics,
)

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def app(ledger: Circulation) -> Iterator[Circulation]:
    join_all(ledger)
    yield ledger


def _events_snapshot(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id, recorded_at"
            " FROM circulation_events ORDER BY notification_id"
        ).fetchall()


# ------------------------------------------------------------------------- append-only


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE circulation_events SET topic = topic",
        "UPDATE circulation_events SET state = '\\x00'::bytea WHERE originator_version = 1",
        "DELETE FROM circulation_events",
        "DELETE FROM circulation_events WHERE originator_version > 1",
        "TRUNCATE circulation_events",
    ],
)
def test_history_cannot_be_edited(app: Circulation, dsn: str, statement: str) -> None:
    register_item(app, CHENGDU, "B1")
    app.execute(
        c.Dispatch(
            owner=CHENGDU, barcode="B1", library=CHENGDU, to_library=YUZHONG, actor=desk(CHENGDU)
        )
    )
    before = _events_snapshot(dsn)
    assert len(before) >= 6
    assert any(version > 1 for _, version, *_ in before)
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    assert isinstance(caught.value, psycopg.errors.InsufficientPrivilege)
    assert "append-only" in str(caught.value)
    assert _events_snapshot(dsn) == before


def test_history_cannot_be_edited_in_autocommit_either(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    before = _events_snapshot(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in (
            "UPDATE circulation_events SET originator_version = originator_version + 100",
            "DELETE FROM circulation_events",
            "TRUNCATE circulation_events CASCADE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert _events_snapshot(dsn) == before


def test_application_role_may_only_read_and_append(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    before = _events_snapshot(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE tongjie_app")
        assert conn.execute("SELECT count(*) FROM circulation_events").fetchone()[0] == len(before)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE circulation_events SET topic = 'x'")
        conn.rollback()
        conn.execute("SET ROLE tongjie_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM command_log")
        conn.rollback()
    assert _events_snapshot(dsn) == before


# ------------------------------------------------------------------------- command log


def test_command_log_row_holds_the_notification_ids(app: Circulation, dsn: str) -> None:
    reader = app.execute(
        c.RegisterReader(
            document="resident_id", number=identity_number(1), library=CHENGDU, actor=desk(CHENGDU)
        )
    )
    register_item(app, CHENGDU, "B1")
    result = app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            reader_id=UUID(reader.outcome["reader_id"]),
            actor=desk(CHENGDU),
            command_id="log-me",
        )
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT command, fingerprint, outcome, notification_ids, recorded_by"
            " FROM command_log WHERE command_id = 'log-me'"
        ).fetchone()
        events = conn.execute(
            "SELECT notification_id, originator_id, topic FROM circulation_events"
            " WHERE notification_id = ANY(%s) ORDER BY notification_id",
            (list(result.notification_ids),),
        ).fetchall()
    assert row is not None
    command, fingerprint, outcome, ids, recorded_by = row
    assert command == "borrow"
    assert HEX64.fullmatch(fingerprint)
    assert (outcome if isinstance(outcome, dict) else json.loads(outcome)) == result.outcome
    assert tuple(ids) == result.notification_ids
    assert recorded_by == f"key:{CHENGDU}"
    assert [(e[1], e[2].split(":")[-1]) for e in events] == [
        (item_id(CHENGDU, "B1"), "Item.Borrowed"),
        (UUID(reader.outcome["reader_id"]), "Reader.LoanOpened"),
    ]
    # Every stored event belongs to exactly one logged command.
    with psycopg.connect(dsn) as conn:
        logged = conn.execute("SELECT unnest(notification_ids) FROM command_log").fetchall()
        stored = conn.execute("SELECT notification_id FROM circulation_events").fetchall()
    assert sorted(n for (n,) in logged) == sorted(n for (n,) in stored)


def test_a_failing_command_writes_no_command_log_row(app: Circulation, dsn: str) -> None:
    register_item(app, CHENGDU, "B1")
    events, log = count_events(dsn), count_rows(dsn, "command_log")
    with pytest.raises(ItemNotAvailable):
        app.execute(
            c.Dispatch(
                owner=CHENGDU,
                barcode="B1",
                library=YUZHONG,
                to_library=CHENGDU,
                actor=desk(YUZHONG),
                command_id="doomed",
            )
        )
    assert (count_events(dsn), count_rows(dsn, "command_log")) == (events, log)
    with psycopg.connect(dsn) as conn:
        assert (
            conn.execute("SELECT 1 FROM command_log WHERE command_id = 'doomed'").fetchone() is None
        )
    # The key is still free: a corrected command may use it.
    ok = app.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode="B1",
            library=CHENGDU,
            to_library=YUZHONG,
            actor=desk(CHENGDU),
            command_id="doomed",
        )
    )
    assert not ok.replayed
    assert count_rows(dsn, "command_log") == log + 1


# --------------------------------------------------------------------- reader identities


def _register(app: Circulation, number: str, home: str = CHENGDU) -> UUID:
    result = app.execute(
        c.RegisterReader(document="resident_id", number=number, library=home, actor=desk(home))
    )
    return UUID(result.outcome["reader_id"])


def test_reader_identities_hold_only_a_keyed_hash(app: Circulation, dsn: str) -> None:
    numbers = [identity_number(n) for n in (1, 2)] + ["11010519491231002X"]
    readers = [_register(app, n) for n in numbers]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT identity_hmac, reader_id FROM reader_identities").fetchall()
    assert len(rows) == 3
    hasher = IdentityHasher(IDENTITY_KEY)
    expected = {
        hasher.digest(parse_identity_number(n)): r for n, r in zip(numbers, readers, strict=True)
    }
    assert dict(rows) == expected
    for digest, _ in rows:
        assert HEX64.fullmatch(digest)
        assert all(n not in digest and n[:17] not in digest for n in numbers)
    # A different key gives different digests: the hash is keyed, not a plain hash.
    other = IdentityHasher(b"another key of 32 bytes........!")
    assert not {other.digest(parse_identity_number(n)) for n in numbers} & set(expected)


def test_forget_reader(app: Circulation, dsn: str) -> None:
    number = identity_number(3)
    reader_id = _register(app, number)
    register_item(app, CHENGDU, "B1")
    register_item(app, CHENGDU, "B2")
    app.execute(
        c.Borrow(
            owner=CHENGDU, barcode="B1", library=CHENGDU, reader_id=reader_id, actor=desk(CHENGDU)
        )
    )
    app.execute(c.Return(owner=CHENGDU, barcode="B1", library=CHENGDU, actor=desk(CHENGDU)))
    history_before = stream(app, reader_id)
    item_history_before = stream(app, item_id(CHENGDU, "B1"))
    # Only the administrator honours a deletion request.
    with pytest.raises(Exception) as caught:
        app.execute(
            c.ForgetReader(reader=c.ReaderCard(number), library=CHENGDU, actor=desk(CHENGDU))
        )
    assert type(caught.value).__name__ == "NotPermitted"
    assert count_rows(dsn, "reader_identities") == 1

    result = app.execute(
        c.ForgetReader(
            reader=c.ReaderCard(number), library=CHENGDU, actor=ADMIN, command_id="gdpr-1"
        )
    )
    assert result.outcome == {"reader_id": str(reader_id), "forgotten": True}
    assert count_rows(dsn, "reader_identities") == 0
    history = stream(app, reader_id)
    assert len(history) == len(history_before) + 1
    forgotten = history[-1]
    assert isinstance(forgotten, Reader.Forgotten)
    assert forgotten.command_id == "gdpr-1"
    assert forgotten.recorded_by == ADMIN.principal
    # History stays: the same events, and the item's loan still names the reader id.
    assert [type(e) for e in history[:-1]] == [type(e) for e in history_before]
    assert [e.originator_version for e in history[:-1]] == [
        e.originator_version for e in history_before
    ]
    assert stream(app, item_id(CHENGDU, "B1")) == item_history_before
    assert any(getattr(e, "reader_id", None) == reader_id for e in item_history_before)
    reader = app.load([reader_id])[reader_id]
    assert isinstance(reader, Reader)
    assert reader.forgotten
    assert reader.masked_number is None
    # The person can no longer be found by number, and the message does not echo it.
    with pytest.raises(UnknownReader) as unknown:
        app.find_reader(number)
    assert number not in unknown.value.message
    with pytest.raises(UnknownReader):
        app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B2",
                library=CHENGDU,
                reader=c.ReaderCard(number),
                actor=desk(CHENGDU),
            )
        )
    # The forgotten record cannot borrow under its old id either.
    with pytest.raises(ReaderBlocked):
        app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B2",
                library=CHENGDU,
                reader_id=reader_id,
                actor=desk(CHENGDU),
            )
        )
    # Registering the person again starts a new, unlinked record.
    again = _register(app, number)
    assert again != reader_id
    assert app.find_reader(number) == again
    assert topics(dsn)["Reader.Forgotten"] == 1


def test_identity_number_never_reaches_the_database(app: Circulation, dsn: str) -> None:
    numbers = [identity_number(n, region="500103") for n in (4, 5)] + ["11010519491231002X"]
    readers = [_register(app, number) for number in numbers]
    # The same person by the other card, typed differently.
    _register(app, numbers[0].lower(), home=YUZHONG)
    app.execute(
        c.RegisterReader(
            document="social_security_card",
            number=" ".join([numbers[1][:6], numbers[1][6:14], numbers[1][14:]]),
            library=YUZHONG,
            actor=desk(YUZHONG),
        )
    )
    for n in range(3):
        register_item(app, CHENGDU, f"B{n}")
    for n, number in enumerate(numbers):
        app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode=f"B{n}",
                library=CHENGDU,
                reader=c.ReaderCard(number),
                actor=desk(CHENGDU),
                occurred_at=now() - timedelta(minutes=n),
            )
        )
    app.execute(
        c.BlockReader(reader_id=readers[1], reason="overdue", library=CHENGDU, actor=desk(CHENGDU))
    )
    app.execute(c.ForgetReader(reader=c.ReaderCard(numbers[2]), library=CHENGDU, actor=ADMIN))
    with pytest.raises(ItemNotAvailable):  # a refusal, in case one is ever logged
        app.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode="B0",
                library=CHENGDU,
                reader=c.ReaderCard(numbers[0]),
                actor=desk(CHENGDU),
            )
        )

    # What must not appear: the number, its first 17 characters (any check character),
    # and the ten characters the mask hides (birth date and sequence).
    needles = set()
    for number in numbers:
        needles |= {number, number.lower(), number[:17], number[4:14]}
    hits = _scan(dsn, sorted(needles))
    assert not hits, hits
    # The needles would have been found if they were there.
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE canary (note text, blob bytea)")
        conn.execute(
            "INSERT INTO canary VALUES (%s, %s)",
            (f"x{numbers[0][4:14]}y", b"z" + numbers[1].encode() + b"z"),
        )
    assert {(table, column) for table, column, _ in _scan(dsn, sorted(needles))} == {
        ("canary", "note"),
        ("canary", "blob"),
    }


def _scan(dsn: str, needles: list[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, needle) where a column of any user table contains a needle:
    text-like columns as text, bytea as raw bytes."""
    hits = []
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
            " FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE t.table_type = 'BASE TABLE'"
            "   AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert any(name == "circulation_events" for _, name, _, _ in columns)
        for schema, table, column, data_type in columns:
            target = sql.Identifier(schema, table)
            col = sql.Identifier(column)
            for needle in needles:
                if data_type == "bytea":
                    query = sql.SQL(
                        "SELECT 1 FROM {} WHERE position(convert_to(%s, 'UTF8') in {}) > 0 LIMIT 1"
                    ).format(target, col)
                else:
                    query = sql.SQL(
                        "SELECT 1 FROM {} WHERE strpos(upper({}::text), upper(%s)) > 0 LIMIT 1"
                    ).format(target, col)
                if conn.execute(query, (needle,)).fetchone():
                    hits.append((table, column, needle))
    return hits


def test_a_save_too_large_for_the_pipeline_commits_whole_and_chained(dsn: str) -> None:
    """psycopg's pipeline can stall on one very large save; the recorder sends those
    without it, in the same single transaction, chained like any other."""
    from ledger.demo.bulk import SAVE_EVERY, generate
    from ledger.integrity.verify import verify_store
    from ledger.write.recorder import PIPELINED_EVENTS

    wanted = 3 * PIPELINED_EVENTS
    assert wanted < SAVE_EVERY  # so the generator saves them all at once
    summary = generate(dsn, wanted, items_per_library=4, readers=200)
    assert summary.events >= wanted
    assert count_events(dsn) == summary.events
    report = verify_store(dsn)
    assert report.mismatch is None and report.events == summary.events

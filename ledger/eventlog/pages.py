"""The log by position: pages of records (binary, prepared, prefetched), the head, and
the last position at an instant."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from operator import itemgetter
from typing import Any

from psycopg import Connection
from psycopg.rows import tuple_row

from ledger.eventlog.decoding import Record, decode_state
from ledger.store import EVENTS_TABLE

# ================================================================ pages by position

#: The columns a page of the log is read with (binary: bytea arrives as bytes, uuid as
#: UUID), the topic already cut to its short name.
SELECT_COLUMNS = (
    "notification_id, originator_id, originator_version, split_part(topic, ':', 2),"
    " state, recorded_at"
)
#: Notification ids per page of a bulk read: events are ~0.4 KB each, so a page is a few
#: MB (two in flight at most).
PAGE = 10_000


def page_query(filtered: bool) -> str:
    """A range of notification ids, optionally only some topics.

    A range, not ``ORDER BY … LIMIT``: the planner then never sorts the rest of the log
    for every page. The rows come back in storage order (append-only: id order, almost
    always) and are put in order in Python, where sorting sorted data costs one pass.
    """
    where = "notification_id > %s AND notification_id <= %s"
    if filtered:  # by short name ("Item.Borrowed"): whichever module the class lives in
        where += " AND split_part(topic, ':', 2) = ANY(%s)"
    return f"SELECT {SELECT_COLUMNS} FROM {EVENTS_TABLE} WHERE {where}"


def to_records(rows: list[tuple[Any, ...]]) -> list[Record]:
    """Decode a page of rows read with ``page_query``."""
    return [
        Record(position, originator_id, version, topic, recorded_at, decode_state(s))
        for position, originator_id, version, topic, s, recorded_at in rows
    ]


def read_page(
    conn: Connection[Any], after: int, upto: int, topics: list[str] | None
) -> list[tuple[Any, ...]]:
    """Stored events with ``after < notification_id <= upto`` (of these topics), in order.

    Binary results: ``state`` arrives as raw bytes, not hex text. Every id up to the
    log's head is final (the recorder's table lock makes ids commit in order; a gap is
    a rolled-back save), so ``upto`` never skips an event that commits later.
    """
    params: tuple[Any, ...] = (after, upto) if topics is None else (after, upto, topics)
    cursor = conn.cursor(binary=True, row_factory=tuple_row)
    rows = cursor.execute(page_query(topics is not None), params, prepare=True).fetchall()
    rows.sort(key=_by_position)
    return rows


_by_position = itemgetter(0)


def pages(
    conn: Connection[Any],
    after: int,
    upto: int,
    topics: list[str] | None,
    size: int = PAGE,
    *,
    prefetch: bool = True,
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """Pages of the log in ``(after, upto]``, each with the position it covers up to.

    With ``prefetch`` the next page is read by a thread while the caller works on
    this one (at most two pages are held): the database and Python overlap.
    """

    def produce(put: Callable[[tuple[int, list[tuple[Any, ...]]] | None], None]) -> None:
        position = after
        while position < upto:
            covered = min(position + size, upto)
            put((covered, read_page(conn, position, covered, topics)))
            position = covered
        put(None)

    if not prefetch:
        out: list[tuple[int, list[tuple[Any, ...]]] | None] = []
        produce(out.append)
        yield from (p for p in out if p is not None)
        return
    box: queue.Queue[Any] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            produce(box.put)
        except BaseException as error:
            failure.append(error)
            box.put(None)

    reader = threading.Thread(target=run, name="rebuild-reader", daemon=True)
    reader.start()
    while (item := box.get()) is not None:
        yield item
    reader.join()
    if failure:
        raise failure[0]


# ====================================================================== the head


def head(conn: Connection[Any]) -> int:
    """The highest notification id committed so far (0 for an empty log)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
        .fetchone()
    )
    assert row is not None
    return int(row[0])


def last(conn: Connection[Any]) -> tuple[int, datetime | None]:
    """The newest notification id and the newest ``recorded_at`` (0 and None: empty)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(f"SELECT max(notification_id), max(recorded_at) FROM {EVENTS_TABLE}")
        .fetchone()
    )
    assert row is not None
    return row[0] or 0, row[1]


def position_at(conn: Connection[Any], instant: datetime) -> int:
    """The last log position recorded by ``instant`` (recorded_at grows with the position)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT notification_id FROM {EVENTS_TABLE} WHERE recorded_at <= %s"
            " ORDER BY notification_id DESC LIMIT 1",
            (instant,),
        )
        .fetchone()
    )
    return int(row[0]) if row else 0


def counts_by_topic(conn: Connection[Any]) -> dict[str, int]:
    """How many events of each class are stored, by short topic, in topic order."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT split_part(topic, ':', 2), count(*) FROM {EVENTS_TABLE} GROUP BY 1 ORDER BY 1"
        )
        .fetchall()
    )
    return {topic: n for topic, n in rows}

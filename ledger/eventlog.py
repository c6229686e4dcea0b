"""The one reader of the stored events (``circulation_events``): pages by position, streams,
the head, and decoding.

Nothing else reads the table the writer appends to. The SQL is here, as functions over a
psycopg connection (for callers that hold one: the writer loading aggregates, the rebuild
and the live runner on their own connections, ``tongjie verify`` in its snapshot), and
``EventLog`` wraps them for everyone else: it takes the pool of eventsourcing's
PostgreSQL datastore (``PostgresDatastore.pool``: autocommit connections, dict rows), not
the application, so the read side never reaches the writer.

Stored events are decoded two ways, both proven to give eventsourcing's values
(``tests/test_projections_records.py``):

* **records** (``Record``, ``to_records``): the position, stream, short topic and the
  event's values as a dict — what a projection folds. The JSON is read with orjson in
  the transcoder's format, and no event object is built.
* **domain events** (``MAPPER``, an eventsourcing ``Mapper`` with the transcoder the
  application registers): what a fold of an aggregate needs (history, evidence, disputes,
  the writer's loads). Its ``to_domain_event`` reads the JSON the same fast way and builds
  the event exactly as eventsourcing's mapper does; events that need upcasting (a
  ``class_version`` above 1) go through eventsourcing's own code.

Notification ids can have gaps (a rolled-back save uses one up), but every id up to the
head is final: the recorder's table lock makes ids commit in order.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar
from uuid import UUID, SafeUUID

import orjson
import psycopg
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic
from psycopg import Connection
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from ledger.store import EVENTS_TABLE

# ====================================================================== decoding

_new = object.__new__
_set = object.__setattr__


def _uuid(hex_: str) -> UUID:
    """``UUID(hex_)`` without its parsing of other spellings: equal, hashes equal."""
    value = _new(UUID)
    _set(value, "int", int(hex_, 16))
    _set(value, "is_safe", SafeUUID.unknown)
    return value


#: Decoders of the transcodings eventsourcing's Application registers by default.
TRANSCODED = {
    "uuid_hex": _uuid,
    "datetime_iso": datetime.fromisoformat,
    "decimal_str": Decimal,
}


def decode_state(state: bytes | memoryview) -> dict[str, Any]:
    """The event's state as plain values: UUIDs, datetimes and Decimals restored.

    The stored JSON is in the format of eventsourcing's ``JSONTranscoder`` with the
    transcodings the application registers (``uuid_hex``, ``datetime_iso``,
    ``decimal_str``): a transcoded value is a two-key object ``{"_type_": name,
    "_data_": value}``.
    """
    data: dict[str, Any] = orjson.loads(state)
    for key, value in data.items():
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                data[key] = TRANSCODED[value["_type_"]](value["_data_"])
            else:
                data[key] = _value(value)
        elif kind is list:
            data[key] = _value(value)
    return data


def _value(value: Any) -> Any:
    if type(value) is list:
        return [_value(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) == 2 and "_type_" in value and "_data_" in value:
        return TRANSCODED[value["_type_"]](value["_data_"])
    return {k: _value(v) for k, v in value.items()}


def short_topic(topic: str) -> str:
    """``ledger.domain.items:Item.Borrowed`` → ``Item.Borrowed``."""
    return topic.rpartition(":")[2]


@lru_cache(maxsize=256)
def event_class(topic: str) -> type:
    return resolve_topic(topic)


def transcoder() -> JSONTranscoder:
    """The application's transcoder: what ``Application.construct_transcoder`` builds with
    the default infrastructure factory — eventsourcing's JSON transcoder with the
    transcodings ``Application.register_transcodings`` registers (the ledger registers no
    others; ``tests/test_projections_records.py`` checks both)."""
    found = JSONTranscoder()
    found.register(UUIDAsHex())
    found.register(DecimalAsStr())
    found.register(DatetimeAsISO())
    return found


class LedgerMapper(Mapper[UUID]):
    """eventsourcing's mapper, reading the stored JSON with the fast decoder.

    The event is built as eventsourcing builds it (``object.__new__`` and its
    ``__dict__``); it is about three times faster than the transcoder's ``json`` object
    hooks. Upcasting (``class_version`` above 1), a cipher or a compressor take
    eventsourcing's own path.
    """

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.decode(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def decode(self, originator_id: UUID, originator_version: int, topic: str, state: bytes) -> Any:
        """The domain event stored with these columns."""
        cls = event_class(topic)
        if self.cipher or self.compressor or getattr(cls, "class_version", 1) != 1:
            return super().to_domain_event(
                StoredEvent(originator_id, originator_version, topic, bytes(state))
            )
        try:
            values = decode_state(state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic '{topic}', "
                f"originator_id '{originator_id}' and originator_version "
                f"{originator_version}: {error}"
            ) from error
        values.pop("class_version", None)
        values["originator_id"] = originator_id
        values["originator_version"] = originator_version
        event = _new(cls)
        _set(event, "__dict__", values)
        return event


#: The ledger's one mapper: the application's transcoder; no cipher, no compressor (the
#: ledger configures neither: ``ledger.store.eventsourcing_env``).
MAPPER = LedgerMapper(transcoder=transcoder())


def decode(row: Mapping[str, Any]) -> Any:
    """The domain event of a row with ``originator_id``, ``originator_version``, ``topic``
    and ``state`` (as ``events_after`` reads them)."""
    return MAPPER.decode(
        row["originator_id"], row["originator_version"], row["topic"], row["state"]
    )


class Record:
    """One stored event: where it sits in the log and in its stream, and its values."""

    __slots__ = ("data", "originator_id", "position", "recorded_at", "topic", "version")

    def __init__(
        self,
        position: int,
        originator_id: UUID,
        version: int,
        topic: str,
        recorded_at: datetime,
        data: dict[str, Any],
    ) -> None:
        self.position = position
        self.originator_id = originator_id
        self.version = version
        self.topic = topic  # the short name: "Item.Borrowed"
        self.recorded_at = recorded_at
        self.data = data

    def __repr__(self) -> str:
        return f"Record({self.position}, {self.topic}, {self.originator_id}, v{self.version})"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A decoded domain event with what the store adds to it: its place in the log, when
    it was recorded, and the topic it was stored under."""

    event: Any
    recorded_at: datetime
    position: int
    topic: str

    @property
    def name(self) -> str:
        return type(self.event).__qualname__


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


# ======================================================================= streams

_STREAM_COLUMNS = "originator_id, originator_version, topic, state, recorded_at, notification_id"


def _recorded(row: tuple[Any, ...]) -> Recorded:
    originator_id, version, topic, state, recorded_at, position = row
    return Recorded(
        MAPPER.decode(originator_id, version, topic, state), recorded_at, position, topic
    )


def read_streams(conn: Connection[Any], ids: Iterable[UUID]) -> dict[UUID, list[Recorded]]:
    """The events of some aggregates, oldest first, in one query (an empty list for an id
    with no events)."""
    ids = list(ids)
    out: dict[UUID, list[Recorded]] = {i: [] for i in ids}
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {_STREAM_COLUMNS} FROM {EVENTS_TABLE} WHERE originator_id = ANY(%s)"
            " ORDER BY originator_id, originator_version",
            (ids,),
            prepare=True,
        )
        .fetchall()
    )
    for row in rows:
        out[row[0]].append(_recorded(row))
    return out


def read_stream(
    conn: Connection[Any],
    aggregate_id: UUID,
    *,
    upto_version: int | None = None,
    upto_position: int | None = None,
) -> list[Recorded]:
    """One aggregate's events, oldest first; only those up to a version or a log position
    when given."""
    where = "originator_id = %s"
    params: list[Any] = [aggregate_id]
    if upto_version is not None:
        where += " AND originator_version <= %s"
        params.append(upto_version)
    if upto_position is not None:
        where += " AND notification_id <= %s"
        params.append(upto_position)
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {_STREAM_COLUMNS} FROM {EVENTS_TABLE} WHERE {where}"
            " ORDER BY originator_version",
            params,
        )
        .fetchall()
    )
    return [_recorded(row) for row in rows]


def fold(events: Iterable[Any], aggregate: Any = None) -> Any:
    """An aggregate after these events (``None`` and no events: ``None``)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


#: Every event class of the disputes module shares this topic prefix; migration 0006
#: indexes exactly these rows, so listing disputes never scans circulation events. (Both
#: topics are written into the SQL: a parameter would not match the partial indexes.)
DISPUTE_TOPICS = "ledger.domain.disputes:%"
#: Losses are indexed by migration 0006 (a partial index on exactly this topic).
LOSS_TOPIC = "ledger.domain.items:Item.DeclaredLost"


def read_dispute_events(conn: Connection[Any]) -> list[Recorded]:
    """Every event of every dispute and return claim, in log order (an index scan)."""
    return _in_log_order(conn, f"topic LIKE '{DISPUTE_TOPICS}'")


def read_losses(conn: Connection[Any]) -> list[Recorded]:
    """Every ``Item.DeclaredLost``, in log order (an index scan)."""
    return _in_log_order(conn, f"topic = '{LOSS_TOPIC}'")


def _in_log_order(conn: Connection[Any], where: str) -> list[Recorded]:
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {_STREAM_COLUMNS} FROM {EVENTS_TABLE} WHERE {where} ORDER BY notification_id"
        )
        .fetchall()
    )
    return [_recorded(row) for row in rows]


def unanswered(conn: Connection[Any], topic: str, answers: Sequence[str]) -> list[UUID]:
    """Aggregates with an event of ``topic`` that no later event of theirs (one of the
    ``answers`` topics) follows: a scan of ``topic``, an index probe each."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT DISTINCT d.originator_id FROM {EVENTS_TABLE} d"
            " WHERE d.topic = %s AND NOT EXISTS ("
            f"   SELECT 1 FROM {EVENTS_TABLE} e WHERE e.originator_id = d.originator_id"
            "    AND e.originator_version > d.originator_version AND e.topic = ANY(%s))",
            (topic, list(answers)),
        )
        .fetchall()
    )
    return [row[0] for row in rows]


# ============================================================ the writer's loads


def moved_on(conn: Connection[Any], ids: list[UUID], versions: list[int]) -> list[UUID]:
    """Those of ``ids`` with an event past the given version: one index probe each, for
    the event that would come next (versions have no gaps)."""
    if not ids:
        return []
    rows = conn.execute(
        "SELECT k.id FROM unnest(%s::uuid[], %s::bigint[]) AS k(id, version)"
        f" WHERE EXISTS (SELECT FROM {EVENTS_TABLE} e"
        "  WHERE e.originator_id = k.id AND e.originator_version = k.version + 1)",
        (ids, versions),
        prepare=True,
    ).fetchall()
    return [row["id"] for row in rows]


def events_after(conn: Connection[Any], ids: list[UUID], versions: list[int]) -> list[Any]:
    """The events of ``ids`` past the given versions, by aggregate, oldest first.

    OFFSET 0 keeps the subquery whole, so the join stays one primary-key range scan per
    aggregate: flattened into a plain join, the planner hash-joined a sequential scan of
    the whole table when streams looked long or statistics were missing (80 ms a load at
    a million events).
    """
    if not ids:
        return []
    return conn.execute(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state"
        " FROM unnest(%s::uuid[], %s::bigint[]) AS k(id, version)"
        " CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state"
        f" FROM {EVENTS_TABLE}"
        " WHERE originator_id = k.id AND originator_version > k.version OFFSET 0) AS e"
        " ORDER BY e.originator_id, e.originator_version",
        (ids, versions),
        prepare=True,
    ).fetchall()


# ====================================================== raw rows (tongjie verify)

#: Every stored event in log order, its columns as the integrity leaf layout hashes them.
RAW_EVENTS_SQL = (
    "SELECT notification_id, originator_id, originator_version, recorded_at, topic, state"
    f" FROM {EVENTS_TABLE} ORDER BY notification_id"
)

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_INT8 = struct.Struct(">q").unpack


class _Bytes(Loader):
    """uuid and text as their raw bytes: exactly what the leaf layout hashes."""

    format = Format.BINARY

    def load(self, data: Any) -> bytes:
        return bytes(data)


class _Micros(Loader):
    """timestamptz as microseconds since 1970 (PostgreSQL sends them since 2000)."""

    format = Format.BINARY

    def load(self, data: Any) -> int:
        return _INT8(data)[0] + _PG_EPOCH_US


_C = TypeVar("_C", psycopg.Cursor[Any], psycopg.ServerCursor[Any])


def raw_values(cur: _C) -> _C:
    """The cursor loads ids and topics as bytes and times as microseconds: the values as
    stored, for hashing (it must be binary)."""
    cur.adapters.register_loader("uuid", _Bytes)
    cur.adapters.register_loader("text", _Bytes)
    cur.adapters.register_loader("timestamptz", _Micros)
    return cur


def raw_event_cursor(conn: Connection[Any], name: str) -> psycopg.ServerCursor[Any]:
    """A server-side cursor over the events that hands out raw values (``RAW_EVENTS_SQL``)."""
    return raw_values(conn.cursor(name, binary=True, row_factory=tuple_row))


def raw_event(conn: Connection[Any], position: int) -> tuple[Any, ...] | None:
    """The event at ``position`` in raw values, with ``RAW_EVENTS_SQL``'s columns."""
    cur = raw_values(conn.cursor(row_factory=tuple_row, binary=True))
    return cur.execute(
        "SELECT notification_id, originator_id, originator_version, recorded_at, topic, state"
        f" FROM {EVENTS_TABLE} WHERE notification_id = %s",
        (position,),
    ).fetchone()


def first_stored(conn: Connection[Any], aggregate_id: UUID) -> tuple[str, bytes] | None:
    """The topic and stored state of an aggregate's first event, undecoded."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            f"SELECT topic, state FROM {EVENTS_TABLE}"
            " WHERE originator_id = %s ORDER BY originator_version LIMIT 1",
            (aggregate_id,),
        ).fetchone()


def neighbour_times(
    conn: Connection[Any], position: int
) -> tuple[datetime | None, datetime | None] | None:
    """``recorded_at`` of the events just before and just after ``position``."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            f"SELECT (SELECT recorded_at FROM {EVENTS_TABLE} WHERE notification_id < %(n)s"
            "        ORDER BY notification_id DESC LIMIT 1),"
            f"       (SELECT recorded_at FROM {EVENTS_TABLE} WHERE notification_id > %(n)s"
            "        ORDER BY notification_id LIMIT 1)",
            {"n": position},
        ).fetchone()


def versions(conn: Connection[Any], aggregate_id: UUID) -> list[int]:
    """The versions an aggregate's stored events have, in order."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            f"SELECT originator_version FROM {EVENTS_TABLE} WHERE originator_id = %s"
            " ORDER BY originator_version",
            (aggregate_id,),
        ).fetchall()
    return [v for (v,) in rows]


# ================================================================ over a pool


class EventLog:
    """The stored events, read over a connection pool.

    ``pool``: the psycopg pool of eventsourcing's PostgreSQL datastore (the writer's
    ``pool``). eventsourcing opens it on first use; so does this.
    """

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool
        self.mapper = MAPPER

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A connection of the pool (autocommit; safe to open an open pool again)."""
        self.pool.open()
        with self.pool.connection() as conn:
            yield conn

    def head(self) -> int:
        """The highest notification id committed so far (0 for an empty log)."""
        with self.connection() as conn:
            return head(conn)

    def page(self, after: int, upto: int, topics: list[str] | None = None) -> list[Record]:
        """Events with ``after < notification_id <= upto`` (of these short topics), as
        records, in log order."""
        with self.connection() as conn:
            return to_records(read_page(conn, after, upto, topics))

    def stream(
        self,
        aggregate_id: UUID,
        *,
        upto_version: int | None = None,
        upto_position: int | None = None,
    ) -> list[Recorded]:
        """One aggregate's events, oldest first (up to a version or a log position)."""
        with self.connection() as conn:
            return read_stream(
                conn, aggregate_id, upto_version=upto_version, upto_position=upto_position
            )

    def streams(self, ids: Iterable[UUID]) -> dict[UUID, list[Recorded]]:
        """The events of some aggregates, oldest first, in one query."""
        with self.connection() as conn:
            return read_streams(conn, ids)

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Aggregates folded from their streams, in one query; absent ones map to None."""
        return {
            aggregate_id: fold(r.event for r in stream)
            for aggregate_id, stream in self.streams(set(ids)).items()
        }

    def dispute_events(self) -> list[Recorded]:
        """Every event of every dispute and return claim, in log order (an index scan)."""
        with self.connection() as conn:
            return read_dispute_events(conn)

    def losses(self) -> list[Recorded]:
        """Every ``Item.DeclaredLost``, in log order (an index scan)."""
        with self.connection() as conn:
            return read_losses(conn)

    def unanswered(self, topic: str, answers: Sequence[str]) -> list[UUID]:
        """Aggregates whose latest ``topic`` event no ``answers`` event follows."""
        with self.connection() as conn:
            return unanswered(conn, topic, answers)

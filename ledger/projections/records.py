"""Stored events as light records, decoded once and shared by every projection.

eventsourcing's mapper builds a domain event object per stored event (topic
resolution, object construction); a projection needs only the values. This decoder
reads the stored JSON directly, in the format of eventsourcing's ``JSONTranscoder``
with the transcodings the application registers (``uuid_hex``, ``datetime_iso``,
``decimal_str``): a transcoded value is a two-key object ``{"_type_": name,
"_data_": value}``. ``tests/test_projections_records.py`` proves that it gives the
same values as the mapper for every event class of the ledger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any
from uuid import UUID, SafeUUID

import orjson
import psycopg.rows

from ledger.store import EVENTS_TABLE

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


def short_topic(topic: str) -> str:
    """``ledger.domain.items:Item.Borrowed`` → ``Item.Borrowed``."""
    return topic.rpartition(":")[2]


def decode_state(state: bytes | memoryview) -> dict[str, Any]:
    """The event's state as plain values: UUIDs, datetimes and Decimals restored."""
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


#: The columns a page of the log is read with (binary: bytea arrives as bytes, uuid as
#: UUID), the topic already cut to its short name.
SELECT_COLUMNS = (
    "notification_id, originator_id, originator_version, split_part(topic, ':', 2),"
    " state, recorded_at"
)


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


def read_page(conn: Any, after: int, upto: int, topics: list[str] | None) -> list[tuple[Any, ...]]:
    """Stored events with ``after < notification_id <= upto`` (of these topics), in order.

    Binary results: ``state`` arrives as raw bytes, not hex text. Every id up to the
    log's head is final (the recorder's table lock makes ids commit in order; a gap is
    a rolled-back save), so ``upto`` never skips an event that commits later.
    """
    params: tuple[Any, ...] = (after, upto) if topics is None else (after, upto, topics)
    cursor = conn.cursor(binary=True, row_factory=psycopg.rows.tuple_row)
    rows = cursor.execute(page_query(topics is not None), params, prepare=True).fetchall()
    rows.sort(key=_by_position)
    return rows


_by_position = itemgetter(0)

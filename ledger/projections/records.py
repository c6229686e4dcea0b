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

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg.rows

from ledger.store import EVENTS_TABLE

#: Decoders of the transcodings eventsourcing's Application registers by default.
TRANSCODED = {
    "uuid_hex": UUID,
    "datetime_iso": datetime.fromisoformat,
    "decimal_str": Decimal,
}

_loads = json.JSONDecoder().decode


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


def full_topics(short: set[str] | frozenset[str]) -> list[str]:
    """The stored topics of the ledger's event classes with these short names."""
    from ledger.domain.items import Item
    from ledger.domain.libraries import Library
    from ledger.domain.readers import Reader

    modules = {
        "Item": Item.__module__,
        "Reader": Reader.__module__,
        "Library": Library.__module__,
    }
    return sorted(f"{modules[name.partition('.')[0]]}:{name}" for name in short)


def decode_state(state: bytes | memoryview) -> dict[str, Any]:
    """The event's state as plain values: UUIDs, datetimes and Decimals restored."""
    data: dict[str, Any] = _loads(bytes(state).decode("utf8"))
    for key, value in data.items():
        if type(value) is dict:
            data[key] = _value(value)
        elif type(value) is list:
            data[key] = [_value(v) if type(v) in (dict, list) else v for v in value]
    return data


def _value(value: Any) -> Any:
    if type(value) is list:
        return [_value(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) == 2 and "_type_" in value and "_data_" in value:
        return TRANSCODED[value["_type_"]](value["_data_"])
    return {k: _value(v) for k, v in value.items()}


#: The columns a page of the log is read with (binary: bytea arrives as bytes, uuid as UUID).
SELECT_COLUMNS = "notification_id, originator_id, originator_version, topic, state, recorded_at"


def page_query(filtered: bool) -> str:
    """Keyset page of the notification log after a position, optionally by topic."""
    where = "notification_id > %s AND notification_id <= %s"
    if filtered:
        where += " AND topic = ANY(%s)"
    return (
        f"SELECT {SELECT_COLUMNS} FROM {EVENTS_TABLE} WHERE {where}"
        " ORDER BY notification_id LIMIT %s"
    )


def to_records(rows: list[tuple[Any, ...]]) -> list[Record]:
    """Decode a page of rows read with ``page_query``."""
    return [
        Record(position, originator_id, version, short_topic(topic), recorded_at, decode_state(s))
        for position, originator_id, version, topic, s, recorded_at in rows
    ]


def read_page(
    conn: Any, after: int, upto: int, topics: list[str] | None, limit: int
) -> list[tuple[Any, ...]]:
    """Stored events with ``after < notification_id <= upto`` (of these topics), in order.

    Binary results: ``state`` arrives as raw bytes, not hex text. Every id up to the
    log's head is final (the recorder's table lock makes ids commit in order; a gap is
    a rolled-back save), so ``upto`` never skips an event that commits later.
    """
    if topics is None:
        params: tuple[Any, ...] = (after, upto, limit)
    else:
        params = (after, upto, topics, limit)
    cursor = conn.cursor(binary=True, row_factory=psycopg.rows.tuple_row)
    return cursor.execute(page_query(topics is not None), params, prepare=True).fetchall()

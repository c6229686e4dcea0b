"""Stored rows as they are, for ``tongjie verify``: what the chain hashed must be
recomputed from the bytes, not from decoded values."""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import Connection
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import tuple_row

from ledger.store import EVENTS_TABLE

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

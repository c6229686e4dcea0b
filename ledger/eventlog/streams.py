"""Aggregate streams: one or many, decoded; the writer's loads (what moved on since a
version); the dispute and loss scans the read-side features use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import tuple_row

from ledger.eventlog.decoding import MAPPER, Recorded
from ledger.store import EVENTS_TABLE

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

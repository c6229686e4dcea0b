"""The one reader of the stored events (``circulation_events``): pages by position, streams,
the head, and decoding.

Nothing else reads the table the writer appends to. The SQL is here, as functions over a
psycopg connection (for callers that hold one: the writer loading aggregates, the rebuild
and the live runner on their own connections, ``tongjie verify`` in its snapshot), and
``EventLog`` wraps them for everyone else: it takes the pool of eventsourcing's
PostgreSQL datastore (``PostgresDatastore.pool``: autocommit connections, dict rows), not
the application, so the read side never reaches the writer.

Its modules: ``decoding`` (records for projections, domain events for folds — one
decoder, proven to give eventsourcing's values), ``pages`` (the log by position and its
head), ``streams`` (aggregate streams, the writer's loads, the dispute and loss scans) and
``raw`` (stored bytes for ``tongjie verify``). The names other modules use are exported here.

Notification ids can have gaps (a rolled-back save uses one up), but every id up to the
head is final: the recorder's table lock makes ids commit in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg_pool import ConnectionPool

from ledger.eventlog.decoding import (
    MAPPER,
    TRANSCODED,
    Record,
    Recorded,
    decode,
    decode_state,
    short_topic,
)
from ledger.eventlog.pages import (
    PAGE,
    counts_by_topic,
    head,
    last,
    pages,
    position_at,
    read_page,
    to_records,
)
from ledger.eventlog.raw import (
    RAW_EVENTS_SQL,
    first_stored,
    neighbour_times,
    raw_event,
    raw_event_cursor,
    versions,
)
from ledger.eventlog.streams import (
    events_after,
    fold,
    moved_on,
    read_dispute_events,
    read_losses,
    read_stream,
    read_streams,
    unanswered,
)

__all__ = [
    "MAPPER",
    "PAGE",
    "RAW_EVENTS_SQL",
    "TRANSCODED",
    "EventLog",
    "Record",
    "Recorded",
    "counts_by_topic",
    "decode",
    "decode_state",
    "events_after",
    "first_stored",
    "fold",
    "head",
    "last",
    "moved_on",
    "neighbour_times",
    "pages",
    "position_at",
    "raw_event",
    "raw_event_cursor",
    "read_page",
    "short_topic",
    "to_records",
    "versions",
]

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

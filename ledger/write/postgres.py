"""The unit of work on PostgreSQL: eventsourcing's event store plus the ledger's side rows.

A batch commits in one transaction (``LedgerRecorder``): its events under the table
lock, their chain and Merkle rows, the idempotency rows, references and identity links.
Aggregates load in one or two queries per batch through the event log's stream reads
and its decoder, and committed states are cached between batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from psycopg_pool import ConnectionPool

from ledger.eventlog import decode, events_after, moved_on
from ledger.integrity.receipts import Receipt, make_receipt
from ledger.integrity.tables import leaves_for, ledger_id
from ledger.write import idempotency, links
from ledger.write.cache import AggregateCache
from ledger.write.recorder import LedgerRecorder, violated_constraint
from ledger.write.work import LoggedCommand, WriteSet


class EventStore(Application):
    """eventsourcing's application, used for its recorder, mapper and event store only."""

    name = "Circulation"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(
            {**env, "APPLICATION_RECORDER_TOPIC": "ledger.write.recorder:LedgerRecorder"}
        )
        assert isinstance(self.recorder, LedgerRecorder)
        self.datastore = self.recorder.datastore


class PostgresUnitOfWork:
    def __init__(self, env: dict[str, str], *, cache_size: int = 100_000) -> None:
        self.store = EventStore(env)
        self.cache = AggregateCache(cache_size)

    @property
    def pool(self) -> ConnectionPool:
        return self.store.datastore.pool

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        """Many aggregates in one or two queries.

        A load asks whether a cached aggregate has an event past its version (another
        process may have written one): one unique-index probe each. Only those that have,
        and those not cached, read their events (the new ones only), so a reader with
        years of loans costs a probe, not a replay.
        """
        wanted = list(set(ids))
        result = self.cache.copies(wanted)
        if not wanted:
            return result
        with self.store.datastore.get_connection() as conn:
            known = [i for i in wanted if result[i] is not None]
            stale = set(moved_on(conn, known, [_version(result[i]) for i in known]))
            refresh = [i for i in wanted if result[i] is None or i in stale]
            rows = events_after(conn, refresh, [_version(result[i]) for i in refresh])
        changed: set[UUID] = set()
        for row in rows:
            event = decode(row)
            result[row["originator_id"]] = event.mutate(result[row["originator_id"]])
            changed.add(row["originator_id"])
        self.cache.remember(result[i] for i in changed)
        return result

    def peek(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        return self.cache.peek(ids)

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        self.cache.remember(aggregates, owned=True)

    def logged(self, command_ids: Sequence[str]) -> dict[str, LoggedCommand]:
        if not command_ids:
            return {}
        with self.store.datastore.get_connection() as conn:
            return idempotency.read(conn, command_ids)

    def commit(self, events: Sequence[Any], write_set: WriteSet) -> None:
        # Straight to the event store: Application.save would re-collect the events
        # through runtime Protocol checks and notify in-process followers we have none of.
        self.store.events.put(events, write_set=write_set)

    def violated(self, error: BaseException) -> str:
        return violated_constraint(error) or ""

    def receipt(self, notification_ids: Sequence[int]) -> Receipt | None:
        """A retry's receipt: the first answer's, read back from the chain."""
        if not notification_ids:
            return None
        with self.store.datastore.get_connection() as conn:
            leaves = leaves_for(conn, notification_ids)
            return make_receipt(
                ledger_id(conn), [leaves[i] for i in notification_ids if i in leaves]
            )

    def reader_for_hmac(self, identity_hmac: str) -> UUID | None:
        with self.store.datastore.get_connection() as conn:
            return links.reader_for_hmac(conn, identity_hmac)

    def reference(self, reference_id: UUID, kind: str) -> tuple[str, str] | None:
        with self.store.datastore.get_connection() as conn:
            return links.reference(conn, reference_id, kind)

    def streams(self, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        with self.store.datastore.get_connection() as conn:
            rows = events_after(conn, list(ids), [0] * len(ids))
        found: dict[UUID, list[Any]] = {i: [] for i in ids}
        for row in rows:
            found[row["originator_id"]].append(decode(row))
        return found

    def close(self) -> None:
        self.store.close()


def _version(aggregate: Aggregate | None) -> int:
    return aggregate.version if aggregate is not None else 0

"""The event recorder, extended with the write-side rows that must commit with the events.

eventsourcing's PostgreSQL recorder inserts a save's events in one transaction
under a table lock. This subclass adds, in that same transaction and after the
notification ids are known: the idempotency rows (``command_log``), the loan and
transfer references, and the identity links of readers; and the tamper-evidence rows
(``ledger.integrity``): each event's leaf and chain hashes and the Merkle nodes it completes.
The table lock serialises writers, so the chain head read in the transaction is the true
one and the chain follows notification order across processes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from ledger.integrity.hashing import EventFields
from ledger.integrity.tables import (
    HEAD_SQL,
    ChainState,
    Head,
    Leaf,
    StaleHead,
    chain_new_events,
)
from ledger.write import idempotency, links
from ledger.write.work import WriteSet

#: Saves larger than this skip psycopg's pipeline mode, which can stall for good when one
#: pipelined batch carries about 600 kB (seen from 2,000 events over a Unix socket; psycopg
#: issue 685). Group commit stays far below it; bulk loads may not.
PIPELINED_EVENTS = 500


class LedgerRecorder(PostgresApplicationRecorder):
    #: Chain every save. Only benchmarks/verify.py turns this off, in a scratch database of
    #: its own, to measure what the chain costs the write path; ``tongjie verify`` reports
    #: any event stored without its chain row.
    chain_events: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = threading.local()  # the chain-head cursor of the save in progress
        # The tree this writer last extended: while no other writer has saved since, the
        # frontier need not be read again (a save is then one index lookup for the chain).
        self._known: Head | None = None
        self._known_lock = threading.Lock()
        # Column arrays instead of eventsourcing's array of composites, sent in binary
        # (%b): in text psycopg escapes every bytea into composite text with a regex.
        self.insert_events_statement = SQL(
            "INSERT INTO {table} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
            " RETURNING notification_id, recorded_at"
        ).format(table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_events_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )
        if self.chain_events:  # pipelined after the lock and the INSERT: no extra round trip
            known = self._known
            head = curs.connection.cursor(row_factory=tuple_row)
            head.execute(HEAD_SQL, {"known": known.size if known else -1}, prepare=True)
            self._head.cursor = head
            self._head.known = known

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        rows = curs.fetchall()
        if len(rows) != len(stored_events):
            raise ProgrammingError(
                f"got {len(rows)} notification ids for {len(stored_events)} events"
            )
        ids = [row["notification_id"] for row in rows]
        write_set: WriteSet | None = kwargs.get("write_set")
        leaves: list[Leaf] = []
        ledger_id = None
        if self.chain_events:
            head = self._head.__dict__.pop("cursor")
            head_rows = head.fetchall()
            head.close()
            ledger_id = next((bytes(h).decode() for lv, _, h in head_rows if lv == -2), None)
            try:
                state = ChainState(head_rows, self._head.__dict__.pop("known", None))
            except StaleHead:  # another chain than the one remembered: read it all (rare)
                with curs.connection.cursor(row_factory=tuple_row) as again:
                    state = ChainState(again.execute(HEAD_SQL, {"known": -1}).fetchall())
            leaves = chain_new_events(curs, state, _new_events(stored_events, rows))
            self._head.pending = state.head()
        if write_set is not None:
            write_set.notification_ids = ids
            write_set.leaves = leaves
            write_set.ledger_id = ledger_id
            self._write_rows(curs, write_set, ids)
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._head.__dict__.pop("pending", None)
        try:
            if len(stored_events) <= PIPELINED_EVENTS:  # the parent's body, not its own retry
                ids = super().insert_events.__wrapped__(self, stored_events, **kwargs)
            else:
                ids = self._insert_unpipelined(stored_events, **kwargs)
        finally:
            pending: Head | None = self._head.__dict__.pop("pending", None)
        if pending is not None:  # committed: remember the tree this save left
            with self._known_lock:
                if self._known is None or pending.size > self._known.size:
                    self._known = pending
        return ids

    def _insert_unpipelined(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The same statements in the same transaction, one round trip each."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def _write_rows(self, curs: Cursor[DictRow], ws: WriteSet, ids: list[int]) -> None:
        """One statement per table, whatever the batch size (see the owning modules)."""
        idempotency.insert(curs, ws.commands, ids)
        links.insert_references(curs, ws.references)
        links.insert_identities(curs, ws.identities)
        links.drop_identities(curs, ws.forgotten)


def _new_events(stored_events: Sequence[StoredEvent], rows: Sequence[DictRow]) -> list[EventFields]:
    """The save's events with what the INSERT returned, in notification order."""
    new = [
        EventFields(
            notification_id=row["notification_id"],
            originator_id=(
                e.originator_id if isinstance(e.originator_id, UUID) else UUID(e.originator_id)
            ),
            originator_version=e.originator_version,
            recorded_at=row["recorded_at"],
            topic=e.topic,
            state=e.state,
        )
        for e, row in zip(stored_events, rows, strict=True)
    ]
    new.sort(key=lambda n: n.notification_id)
    return new


def violated_constraint(error: BaseException) -> str | None:
    """The name of the unique constraint behind an IntegrityError, when PostgreSQL says."""
    cause: BaseException | None = error
    while cause is not None:
        diag = getattr(cause, "diag", None)
        if diag is not None and diag.constraint_name:
            return str(diag.constraint_name)
        cause = cause.__cause__
    return None


__all__ = ["IntegrityError", "LedgerRecorder", "violated_constraint"]

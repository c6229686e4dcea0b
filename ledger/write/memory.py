"""The unit of work in memory: the writer's rules and command log without a database.

Used by the fast test tier (``tests/domain``) and by the bulk generator, which runs
every command through the writer here and hands the committed events and rows to
PostgreSQL thousands at a time. It keeps what PostgreSQL would enforce: one event per
aggregate version, one row per command id, reference and identity key, all or nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.integrity.receipts import Receipt
from ledger.write.cache import clone
from ledger.write.work import LoggedCommand, WriteSet


class UniqueViolation(IntegrityError):
    """What PostgreSQL's unique constraints say, named the same way."""

    def __init__(self, constraint: str) -> None:
        super().__init__(f"duplicate key violates unique constraint {constraint!r}")
        self.constraint = constraint


class MemoryUnitOfWork:
    def __init__(self) -> None:
        self.events: list[Any] = []  # every recorded event, in log order
        self.command_log: dict[str, dict[str, Any]] = {}
        self.references: dict[tuple[UUID, str], tuple[str, str]] = {}
        self.identities: dict[str, UUID] = {}
        self._states: dict[UUID, Aggregate] = {}
        self._streams: dict[UUID, list[Any]] = {}
        self._lock = threading.Lock()

    def stream(self, aggregate_id: UUID) -> list[Any]:
        return list(self._streams.get(aggregate_id, []))

    # ----------------------------------------------------------- UnitOfWork

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        with self._lock:
            return {i: clone(a) if (a := self._states.get(i)) else None for i in set(ids)}

    def peek(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        with self._lock:
            return {i: self._states[i] for i in ids if i in self._states}

    def logged(self, command_ids: Sequence[str]) -> dict[str, LoggedCommand]:
        with self._lock:
            rows = {i: self.command_log[i] for i in command_ids if i in self.command_log}
        return {
            i: LoggedCommand(
                row["command"], row["fingerprint"], row["outcome"], row["notification_ids"]
            )
            for i, row in rows.items()
        }

    def commit(self, events: Sequence[Any], write_set: WriteSet) -> None:
        with self._lock:
            self._check(events, write_set)
            ids = self._append(events, write_set)
            start = 0
            for row in write_set.commands:
                self.command_log[row.command_id] = {
                    "command": row.command,
                    "fingerprint": row.fingerprint,
                    "outcome": row.outcome,
                    "notification_ids": tuple(ids[start : start + row.event_count]),
                    "recorded_by": row.recorded_by,
                }
                start += row.event_count
            for reference_id, kind, _, owner, barcode in write_set.references:
                self.references[reference_id, kind] = (owner, barcode)
            for identity_hmac, reader_id in write_set.identities:
                self.identities[identity_hmac] = reader_id
            if write_set.forgotten:
                gone = set(write_set.forgotten)
                self.identities = {h: r for h, r in self.identities.items() if r not in gone}
            write_set.notification_ids = ids

    def _append(self, events: Sequence[Any], write_set: WriteSet) -> list[int]:
        """Keep the events (and the states they lead to); their positions in the log."""
        first = len(self.events) + 1
        for event in events:
            self.events.append(event)
            self._streams.setdefault(event.originator_id, []).append(event)
            state = self._states.get(event.originator_id)
            self._states[event.originator_id] = event.mutate(
                clone(state) if state is not None else None
            )
        return list(range(first, first + len(events)))

    def _check(self, events: Sequence[Any], write_set: WriteSet) -> None:
        versions = {
            i: self._states[i].version if i in self._states else 0
            for i in {e.originator_id for e in events}
        }
        for event in events:
            if event.originator_version != versions[event.originator_id] + 1:
                raise UniqueViolation("circulation_events_pkey")
            versions[event.originator_id] += 1
        if any(row.command_id in self.command_log for row in write_set.commands):
            raise UniqueViolation("command_log_pkey")
        if any((r[0], r[1]) in self.references for r in write_set.references):
            raise UniqueViolation("item_references_pkey")
        if any(h in self.identities for h, _ in write_set.identities):
            raise UniqueViolation("reader_identities_pkey")

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        """Nothing to do: a commit applies its events to the states it keeps."""

    def violated(self, error: BaseException) -> str:
        return getattr(error, "constraint", "")

    def receipt(self, notification_ids: Sequence[int]) -> Receipt | None:
        return None  # no Merkle tree in memory

    def reader_for_hmac(self, identity_hmac: str) -> UUID | None:
        return self.identities.get(identity_hmac)

    def reference(self, reference_id: UUID, kind: str) -> tuple[str, str] | None:
        return self.references.get((reference_id, kind))

    def streams(self, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        with self._lock:
            return {i: list(self._streams.get(i, [])) for i in ids}

    def close(self) -> None:
        pass

"""The unit of work: what the writer needs from storage, and one batch's working set.

``UnitOfWork`` is the one seam between the writer and where events are kept. The
PostgreSQL implementation (``ledger.write.postgres``) commits a batch in one
transaction with its side rows; the in-memory one (``ledger.write.memory``) runs the
same writer, rules and command log without a database, for the fast test tier and
the bulk generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.items import Item
from ledger.integrity.receipts import Receipt


@dataclass(slots=True)
class CommandRow:
    """One command's idempotency row: answered again, byte for byte, to a retry."""

    command_id: str
    command: str
    fingerprint: str
    outcome: dict[str, Any]
    recorded_by: str
    event_count: int  # how many of the save's events (in order) belong to this command


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A command_log row as read back."""

    command: str
    fingerprint: str
    outcome: dict[str, Any]
    notification_ids: tuple[int, ...]


@dataclass(slots=True)
class WriteSet:
    """Everything besides events that one save records."""

    commands: list[CommandRow] = field(default_factory=list)
    references: list[tuple[UUID, str, UUID, str, str]] = field(default_factory=list)
    identities: list[tuple[str, UUID]] = field(default_factory=list)
    forgotten: list[UUID] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    leaves: list[Any] = field(default_factory=list)  # filled by the save: for receipts
    ledger_id: str | None = None

    def extend(self, other: WriteSet) -> None:
        self.commands.extend(other.commands)
        self.references.extend(other.references)
        self.identities.extend(other.identities)
        self.forgotten.extend(other.forgotten)


class UnitOfWork(Protocol):
    """Where the writer reads aggregates and look-ups, and commits a batch at once."""

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        """Committed states, as copies the caller may change; absent ones map to None."""
        ...

    def peek(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """Already known states, read-only: a guess at which further aggregates to load."""
        ...

    def logged(self, command_ids: Sequence[str]) -> dict[str, LoggedCommand]: ...

    def commit(self, events: Sequence[Any], write_set: WriteSet) -> None:
        """Append the events and the side rows atomically; fill in the write set's
        notification ids (and leaves). A broken uniqueness rule raises eventsourcing's
        ``IntegrityError`` and records nothing."""
        ...

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        """The batch's committed states, handed over (the writer keeps no reference)."""
        ...

    def violated(self, error: BaseException) -> str:
        """The uniqueness rule an ``IntegrityError`` broke ("" when unknown)."""
        ...

    def receipt(self, notification_ids: Sequence[int]) -> Receipt | None: ...

    def reader_for_hmac(self, identity_hmac: str) -> UUID | None: ...

    def reference(self, reference_id: UUID, kind: str) -> tuple[str, str] | None:
        """The (owner, barcode) of the item a loan or transfer id belongs to."""
        ...

    def streams(self, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        """The committed events of each aggregate, oldest first (for look-ups of history)."""
        ...

    def close(self) -> None: ...


class Poisoned(Exception):
    """A handler changed an aggregate and then failed: the batch must be rerun singly."""


@dataclass
class BatchWork:
    """One batch's loaded aggregates and the side rows its commands produce
    (the ``Work`` that ``ledger.write.handlers`` see)."""

    uow: UnitOfWork
    loaded: dict[UUID, Aggregate | None]
    loan_limit: int
    # By aggregate id, in the order first touched: `in` on a list would compare aggregates
    # field by field (eventsourcing's __eq__), a cost that grows with the batch squared.
    touched: dict[UUID, Aggregate] = field(default_factory=dict)
    changed: dict[UUID, Aggregate] = field(default_factory=dict)
    staged: WriteSet = field(default_factory=WriteSet)

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in self.loaded:
            self.loaded.update(self.uow.load([aggregate_id]))
        aggregate = self.loaded[aggregate_id]
        if aggregate is not None:
            self.touched.setdefault(aggregate_id, aggregate)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        self.loaded[aggregate.id] = aggregate
        self.touched[aggregate.id] = aggregate

    def reference(self, reference_id: UUID, kind: str, item: Item) -> None:
        self.staged.references.append((reference_id, kind, item.id, item.owner, item.barcode))

    def link_identity(self, identity_hmac: str, reader_id: UUID) -> None:
        self.staged.identities.append((identity_hmac, reader_id))

    def forget(self, reader_id: UUID) -> None:
        self.staged.forgotten.append(reader_id)

    def saved(self) -> list[Aggregate]:
        """Aggregates changed by the batch's successful commands (now committed)."""
        return [a for a in self.changed.values() if not a.pending_events]

    def begin(self) -> None:
        self.touched = {}
        self.staged = WriteSet()

    def drain(self) -> list[Any]:
        events: list[Any] = []
        for aggregate in self.touched.values():
            new = aggregate.collect_events()
            if new:
                events.extend(new)
                self.changed.setdefault(aggregate.id, aggregate)
        return events

    def dirty(self) -> bool:
        return any(a.pending_events for a in self.touched.values()) or bool(
            self.staged.references or self.staged.identities or self.staged.forgotten
        )

"""The ``Circulation`` application: the ledger's only writer.

One public method per command. Each builds a command value, and ``execute``
authorises it, checks its clock, answers retries from the command log, and runs
it — in a group-committed batch or on its own — so that a command either appends
all its events (with its idempotency row) in one transaction or appends nothing.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import Connection

from ledger import commands as c
from ledger.config import Settings
from ledger.domain.common import Actor, Context, check_occurred_at, item_id
from ledger.domain.disputes import Dispute
from ledger.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    IdempotencyKeyReused,
    UnknownDispute,
    UnknownLoan,
    UnknownReader,
    UnknownTransfer,
    WrongLibrary,
)
from ledger.domain.identity import DocumentKind, IdentityHasher, parse_identity_number
from ledger.domain.items import Item
from ledger.group_commit import GroupCommitter
from ledger.handlers import HANDLERS
from ledger.integrity.receipts import Receipt, make_receipt
from ledger.integrity.tables import leaves_for, ledger_id
from ledger.recorder import CommandRow, LedgerRecorder, WriteSet, violated_constraint
from ledger.store import EVENTS_TABLE, eventsourcing_env, identity_key, migrate, resolve_dsn


@dataclass(frozen=True, slots=True)
class Result:
    """What a command recorded: its outcome, and where its events sit in the log."""

    command_id: str
    outcome: dict[str, Any]
    notification_ids: tuple[int, ...]
    replayed: bool = False  # True: a retry answered from the command log, nothing recorded
    receipt: Receipt | None = None  # where its events sit in the Merkle tree (ledger.integrity)


class _Poisoned(Exception):
    """A handler changed an aggregate and then failed: the batch must be rerun singly."""


@dataclass
class _Work:
    """One batch's loaded aggregates and the side rows its commands produce."""

    app: Circulation
    loaded: dict[UUID, Aggregate | None]
    loan_limit: int
    touched: list[Aggregate] = field(default_factory=list)
    changed: list[Aggregate] = field(default_factory=list)
    staged: WriteSet = field(default_factory=WriteSet)

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        if aggregate_id not in self.loaded:
            self.loaded.update(self.app.load([aggregate_id]))
        aggregate = self.loaded[aggregate_id]
        if aggregate is not None and aggregate not in self.touched:
            self.touched.append(aggregate)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        self.loaded[aggregate.id] = aggregate
        self.touched.append(aggregate)

    def reference(self, reference_id: UUID, kind: str, item: Item) -> None:
        self.staged.references.append((reference_id, kind, item.id, item.owner, item.barcode))

    def link_identity(self, identity_hmac: str, reader_id: UUID) -> None:
        self.staged.identities.append((identity_hmac, reader_id))

    def forget(self, reader_id: UUID) -> None:
        self.staged.forgotten.append(reader_id)

    def saved(self) -> list[Aggregate]:
        """Aggregates changed by the batch's successful commands (now committed)."""
        return [a for a in self.changed if not a.pending_events]

    def begin(self) -> None:
        self.touched = []
        self.staged = WriteSet()

    def drain(self) -> list[Any]:
        events: list[Any] = []
        for aggregate in self.touched:
            new = aggregate.collect_events()
            if new:
                events.extend(new)
                if aggregate not in self.changed:
                    self.changed.append(aggregate)
        return events

    def dirty(self) -> bool:
        return any(a.pending_events for a in self.touched) or bool(
            self.staged.references or self.staged.identities or self.staged.forgotten
        )


class Circulation(Application):
    """Records what happens at member libraries' desks; refuses what breaks a rule."""

    name = "Circulation"

    def __init__(
        self,
        env: dict[str, str],
        *,
        hasher: IdentityHasher,
        loan_limit: int = 20,
        group_commit: bool = True,
        cache_size: int = 100_000,
    ) -> None:
        env = {**env, "APPLICATION_RECORDER_TOPIC": "ledger.recorder:LedgerRecorder"}
        super().__init__(env)
        assert isinstance(self.recorder, LedgerRecorder)
        self.datastore = self.recorder.datastore
        self.hasher = hasher
        self.loan_limit = loan_limit
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._committer: GroupCommitter[c.Command, Result] | None = (
            GroupCommitter(self._run_batch, name="tongjie-group-commit") if group_commit else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, dsn: str | None = None) -> Circulation:
        """Resolve the database (starting the embedded one if needed), migrate, open."""
        dsn = dsn or resolve_dsn(settings)
        migrate(dsn)
        return cls(
            eventsourcing_env(dsn, pool_size=settings.pool_size),
            hasher=IdentityHasher(identity_key(settings)),
            loan_limit=settings.loan_limit,
            group_commit=settings.group_commit,
        )

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        super().close()

    # ------------------------------------------------------------ commands

    def join_library(
        self,
        *,
        code: str,
        name: str,
        region: str,
        level: str,
        policy: dict[str, Any] | None = None,
        can_circulate: bool = True,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.JoinLibrary(
                code=code,
                library_name=name,
                region=region,
                level=level,
                policy=policy or {},
                can_circulate=can_circulate,
                actor=actor,
                library=code,
                **envelope,
            )
        )

    def change_policy(
        self,
        *,
        library: str,
        policy: dict[str, Any],
        can_circulate: bool = True,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.ChangePolicy(
                library=library, policy=policy, can_circulate=can_circulate, actor=actor, **envelope
            )
        )

    def register_item(
        self,
        *,
        owner: str,
        barcode: str,
        title: str | None = None,
        isbn: str | None = None,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.RegisterItem(
                owner=owner,
                barcode=barcode,
                title=title,
                isbn=isbn,
                library=owner,
                actor=actor,
                **envelope,
            )
        )

    def register_reader(
        self,
        *,
        document: str,
        number: str,
        home_library: str,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        """Both cards carry the same number, so both reach the same reader."""
        DocumentKind(document)
        identity = parse_identity_number(number)
        digest = self.hasher.digest(identity)
        existing = self.reader_for_hmac(digest)
        command = c.RegisterReader(
            identity_hmac=digest,
            masked_number=identity.masked(),
            reader_id=existing or uuid4(),
            library=home_library,
            actor=actor,
            **envelope,
        )
        if existing is not None:
            return self._known_reader(command, existing)
        return self.execute(command)

    def _known_reader(self, command: c.RegisterReader, reader_id: UUID) -> Result:
        """The person is registered already: a retry replays, anything else names the reader."""
        self._authorise(command)
        if command.command_id:
            row = self._command_log([command.command_id]).get(command.command_id)
            if row is not None:
                replayed = self._replay(command, row)
                if isinstance(replayed, BaseException):
                    raise replayed
                return replayed
        reader = self.load([reader_id])[reader_id]
        return Result(
            command_id=command.command_id or "",
            outcome={
                "reader_id": str(reader_id),
                "masked_number": command.masked_number,
                "home_library": getattr(reader, "home_library", None),
                "created": False,
            },
            notification_ids=(),
        )

    def block_reader(
        self, *, reader_id: UUID, reason: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.BlockReader(
                reader_id=reader_id, reason=reason, library=library, actor=actor, **envelope
            )
        )

    def unblock_reader(
        self, *, reader_id: UUID, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.UnblockReader(reader_id=reader_id, library=library, actor=actor, **envelope)
        )

    def forget_reader(self, *, number: str, actor: Actor, library: str, **envelope: Any) -> Result:
        """Honour a deletion request: drop the identity link, record that it was dropped."""
        reader_id = self.find_reader(number)
        return self.execute(
            c.ForgetReader(reader_id=reader_id, library=library, actor=actor, **envelope)
        )

    def borrow(
        self,
        *,
        owner: str,
        barcode: str,
        library: str,
        actor: Actor,
        reader_id: UUID | None = None,
        reader_number: str | None = None,
        **envelope: Any,
    ) -> Result:
        if reader_id is None:
            if reader_number is None:
                raise UnknownReader(
                    "name the reader by reader_id or identity number", field="reader"
                )
            reader_id = self.find_reader(reader_number)
        return self.execute(
            c.Borrow(
                owner=owner,
                barcode=barcode,
                reader_id=reader_id,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def renew(self, *, loan_id: UUID, library: str, actor: Actor, **envelope: Any) -> Result:
        owner, barcode = self._reference(loan_id, "loan")
        return self.execute(
            c.Renew(
                owner=owner,
                barcode=barcode,
                loan_id=loan_id,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def return_item(
        self, *, owner: str, barcode: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.Return(owner=owner, barcode=barcode, library=library, actor=actor, **envelope)
        )

    def dispatch(
        self,
        *,
        owner: str,
        barcode: str,
        from_library: str,
        to_library: str,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.Dispatch(
                owner=owner,
                barcode=barcode,
                to_library=to_library,
                library=from_library,
                actor=actor,
                **envelope,
            )
        )

    def receive(self, *, transfer_id: UUID, library: str, actor: Actor, **envelope: Any) -> Result:
        owner, barcode = self._reference(transfer_id, "transfer")
        return self.execute(
            c.Receive(
                owner=owner,
                barcode=barcode,
                transfer_id=transfer_id,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def cancel_transfer(
        self,
        *,
        transfer_id: UUID,
        reason: str,
        library: str,
        actor: Actor,
        note: str = "",
        **envelope: Any,
    ) -> Result:
        owner, barcode = self._reference(transfer_id, "transfer")
        return self.execute(
            c.CancelTransfer(
                owner=owner,
                barcode=barcode,
                transfer_id=transfer_id,
                reason=reason,
                note=note,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def receive_unannounced(
        self,
        *,
        owner: str,
        barcode: str,
        library: str,
        actor: Actor,
        note: str = "",
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.ReceiveUnannounced(
                owner=owner, barcode=barcode, note=note, library=library, actor=actor, **envelope
            )
        )

    def declare_lost(
        self, *, owner: str, barcode: str, reason: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.DeclareLost(
                owner=owner,
                barcode=barcode,
                reason=reason,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def found(
        self, *, owner: str, barcode: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.Found(owner=owner, barcode=barcode, library=library, actor=actor, **envelope)
        )

    def withdraw(
        self, *, owner: str, barcode: str, reason: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.Withdraw(
                owner=owner,
                barcode=barcode,
                reason=reason,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def correct(
        self,
        *,
        owner: str,
        barcode: str,
        corrects_version: int,
        reason: str,
        changes: dict[str, Any],
        library: str,
        actor: Actor,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.Correct(
                owner=owner,
                barcode=barcode,
                corrects_version=corrects_version,
                reason=reason,
                changes=changes,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    # ------------------------------------------------------------ disputes

    def open_dispute(
        self,
        *,
        owner: str,
        barcode: str,
        kind: str,
        other_party: str,
        statement: str,
        library: str,
        actor: Actor,
        dispute_id: UUID | None = None,
        trigger: str | None = None,
        reference_id: UUID | None = None,
        **envelope: Any,
    ) -> Result:
        """Both parties must appear in the item's history: looked up here, checked in the rule."""
        from ledger.disputes.evidence import involved_libraries

        return self.execute(
            c.OpenDispute(
                owner=owner,
                barcode=barcode,
                kind=kind,
                other_party=other_party,
                statement=statement,
                dispute_id=dispute_id,
                trigger=trigger,
                reference_id=reference_id,
                involved=involved_libraries(self, item_id(owner, barcode)),
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def add_statement(
        self, *, dispute_id: UUID, text: str, library: str, actor: Actor, **envelope: Any
    ) -> Result:
        return self.execute(
            c.AddStatement(
                dispute_id=dispute_id, text=text, library=library, actor=actor, **envelope
            )
        )

    def add_attachment(
        self,
        *,
        dispute_id: UUID,
        uri: str,
        sha256: str,
        library: str,
        actor: Actor,
        description: str = "",
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.AddAttachment(
                dispute_id=dispute_id,
                uri=uri,
                sha256=sha256,
                description=description,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def resolve_dispute(
        self,
        *,
        dispute_id: UUID,
        liable_library: str | None,
        compensation: str,
        text: str,
        actor: Actor,
        library: str | None = None,
        **envelope: Any,
    ) -> Result:
        """The administrator rules; ``library`` defaults to the desk that opened the case."""
        return self.execute(
            c.ResolveDispute(
                dispute_id=dispute_id,
                liable_library=liable_library,
                compensation=compensation,
                text=text,
                library=library if library is not None else self._dispute_desk(actor, dispute_id),
                actor=actor,
                **envelope,
            )
        )

    def withdraw_dispute(
        self,
        *,
        dispute_id: UUID,
        reason: str,
        actor: Actor,
        library: str | None = None,
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.WithdrawDispute(
                dispute_id=dispute_id,
                reason=reason,
                library=library if library is not None else self._dispute_desk(actor, dispute_id),
                actor=actor,
                **envelope,
            )
        )

    def claim_returned(
        self,
        *,
        owner: str,
        barcode: str,
        returned_at: str,
        library: str,
        actor: Actor,
        claimed_on: str | None = None,
        statement: str = "",
        **envelope: Any,
    ) -> Result:
        return self.execute(
            c.ClaimReturned(
                owner=owner,
                barcode=barcode,
                returned_at=returned_at,
                claimed_on=claimed_on,
                statement=statement,
                library=library,
                actor=actor,
                **envelope,
            )
        )

    def _dispute_desk(self, actor: Actor, dispute_id: UUID) -> str:
        """Where a ruling or withdrawal is recorded when the caller names no library: the
        actor's own desk, else (the administrator) the desk that opened the case."""
        if actor.library is not None:
            return actor.library
        dispute = self.load([dispute_id])[dispute_id]
        if not isinstance(dispute, Dispute):
            raise UnknownDispute(f"no dispute {dispute_id}", field="dispute_id")
        return dispute.opened_by

    # -------------------------------------------------------------- queries

    def get_item(self, owner: str, barcode: str) -> Item | None:
        aggregate = self.load([item_id(owner, barcode)])[item_id(owner, barcode)]
        return aggregate if isinstance(aggregate, Item) else None

    def find_reader(self, number: str) -> UUID:
        identity = parse_identity_number(number)
        reader_id = self.reader_for_hmac(self.hasher.digest(identity))
        if reader_id is None:
            raise UnknownReader(
                f"no reader registered with number {identity.masked()}: register the reader first",
                field="reader",
            )
        return reader_id

    def reader_for_hmac(self, digest: str) -> UUID | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT reader_id FROM reader_identities WHERE identity_hmac = %s", (digest,)
            ).fetchone()
        return row["reader_id"] if row else None

    def _reference(self, reference_id: UUID, kind: str) -> tuple[str, str]:
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT owner, barcode FROM item_references WHERE reference_id = %s AND kind = %s",
                (reference_id, kind),
            ).fetchone()
        if row is None:
            error = UnknownLoan if kind == "loan" else UnknownTransfer
            raise error(f"no {kind} {reference_id}", field=f"{kind}_id")
        return row["owner"], row["barcode"]

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        """Load many aggregates in one or two queries; absent ones map to None.

        Committed states are cached. A load asks whether a cached aggregate has an event
        past its version (another process may have written one): one unique-index probe
        each. Only those that have, and those not cached, read their events (the new
        ones only), so a reader with years of loans costs a probe, not a replay.
        Callers get their own copies: the cache is only ever replaced, never mutated.
        """
        wanted = list(set(ids))
        result: dict[UUID, Aggregate | None] = {}
        with self._cache_lock:
            for aggregate_id in wanted:
                cached = self._cache.get(aggregate_id)
                result[aggregate_id] = _clone(cached) if cached is not None else None
        if not wanted:
            return result
        with self.datastore.get_connection() as conn:
            known = [i for i in wanted if result[i] is not None]
            moved_on = set(_moved_on(conn, known, [_version(result[i]) for i in known]))
            refresh = [i for i in wanted if result[i] is None or i in moved_on]
            rows = _events_after(conn, refresh, [_version(result[i]) for i in refresh])
        changed: set[UUID] = set()
        for row in rows:
            event = self.mapper.to_domain_event(
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
            result[row["originator_id"]] = event.mutate(result[row["originator_id"]])
            changed.add(row["originator_id"])
        self._remember(result[i] for i in changed)
        return result

    def _peek(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """Cached states, read-only, to guess which further aggregates a batch needs."""
        with self._cache_lock:
            return {i: self._cache[i] for i in ids if i in self._cache}

    def _remember(self, aggregates: Iterable[Aggregate | None], *, owned: bool = False) -> None:
        """Cache committed states, keeping the newest version of each.

        ``owned``: the caller hands the objects over (a finished batch), so no copy is needed.
        """
        with self._cache_lock:
            for aggregate in aggregates:
                if aggregate is None or aggregate.pending_events:
                    continue
                cached = self._cache.get(aggregate.id)
                if cached is None or cached.version < aggregate.version:
                    self._cache[aggregate.id] = aggregate if owned else _clone(aggregate)
                self._cache.move_to_end(aggregate.id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # ------------------------------------------------------------ execution

    def execute(self, command: c.Command) -> Result:
        command = self._prepare(command)
        if self._committer is not None:
            return self._committer.submit(command)
        result = self._run_batch([command])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _authorise(self, command: c.Command) -> None:
        actor = command.actor
        if actor.library is not None and actor.library != command.library:
            raise WrongLibrary(
                f"a key of {actor.library} records only what happens at {actor.library}, "
                f"not at {command.library}",
                field="library",
            )

    def _prepare(self, command: c.Command) -> c.Command:
        self._authorise(command)
        now = datetime.now(UTC)
        occurred_at = check_occurred_at(command.occurred_at or now, now)
        digest = command.fingerprint()
        if command.command_id:
            return replace(command, occurred_at=occurred_at, digest=digest)
        return replace(
            command,
            occurred_at=occurred_at,
            command_id=f"auto-{uuid4()}",
            generated_id=True,
            digest=digest,
        )

    def _run_batch(self, batch: Sequence[c.Command]) -> list[Result | BaseException]:
        """Try the batch as one transaction; if that fails, give each command its own."""
        if len(batch) == 1:
            return [self._run_alone(batch[0])]
        try:
            return self._try_batch(batch)
        except (_Poisoned, IntegrityError):
            return [self._run_alone(command) for command in batch]

    def _run_alone(self, command: c.Command) -> Result | BaseException:
        try:
            return self._try_batch([command])[0]
        except _Poisoned as poisoned:
            return poisoned.__cause__ or poisoned
        except IntegrityError as error:
            return self._after_integrity_error(command, error)
        except BaseException as error:  # answered to its own caller, never to the batch
            return error

    def _after_integrity_error(
        self, command: c.Command, error: IntegrityError
    ) -> Result | BaseException:
        constraint = violated_constraint(error) or ""
        if not command.generated_id and self._command_log([command.command_id or ""]):
            constraint = "command_log_pkey"  # a twin with the same key won: answer as it did
        if constraint == "command_log_pkey":
            try:  # the concurrent twin committed first: answer from its row
                return self._try_batch([command])[0]
            except BaseException as again:
                return again
        if constraint == "reader_identities_pkey" and isinstance(command, c.RegisterReader):
            existing = self.reader_for_hmac(command.identity_hmac)
            if existing is None:
                return ConcurrencyConflict("reader registration raced with a deletion; retry")
            return self._known_reader(command, existing)
        return ConcurrencyConflict(
            "another command changed this record at the same moment; nothing was recorded, "
            "retry with fresh state",
        )

    def _try_batch(self, batch: Sequence[c.Command]) -> list[Result | BaseException]:
        results: list[Result | BaseException | None] = [None] * len(batch)
        seen = self._command_log([cmd.command_id or "" for cmd in batch if not cmd.generated_id])
        work = _Work(self, {}, self.loan_limit)
        ids: set[UUID] = set()
        for cmd in batch:
            ids |= cmd.aggregate_ids()
        cached = self._peek(ids)
        for cmd in batch:  # a cached item already names its loan's reader: one query, not two
            ids |= cmd.dependent_ids(cached)
        work.loaded.update(self.load(ids))
        extra: set[UUID] = set()
        for cmd in batch:
            extra |= cmd.dependent_ids(work.loaded)
        work.loaded.update(self.load(extra - work.loaded.keys()))

        write_set = WriteSet()
        events: list[Any] = []
        pending: dict[str, int] = {}  # command_id → index of the first in this batch
        for index, cmd in enumerate(batch):
            command_id = cmd.command_id or ""
            if command_id in seen:
                results[index] = self._replay(cmd, seen[command_id])
                continue
            if command_id in pending:
                results[index] = _Twin(pending[command_id])  # resolved after the save
                continue
            work.begin()
            ctx = Context(
                occurred_at=cmd.occurred_at or datetime.now(UTC),
                library=cmd.library,
                recorded_by=cmd.actor.principal,
                command_id=command_id,
            )
            try:
                outcome = HANDLERS[type(cmd)](cmd, ctx, work)
            except DomainError as error:
                if work.dirty():
                    raise _Poisoned from error
                results[index] = error
                continue
            new_events = work.drain()
            events.extend(new_events)
            write_set.commands.append(
                CommandRow(
                    command_id,
                    cmd.name,
                    "" if cmd.generated_id else cmd.fingerprint(),
                    outcome,
                    cmd.actor.principal,
                    len(new_events),
                )
            )
            write_set.references.extend(work.staged.references)
            write_set.identities.extend(work.staged.identities)
            write_set.forgotten.extend(work.staged.forgotten)
            pending[command_id] = index
            results[index] = _Saved(outcome, len(new_events))

        if events:
            # Straight to the event store: Application.save would re-collect the events
            # through runtime Protocol checks and notify in-process followers we have none of.
            self.events.put(events, write_set=write_set)
            self._remember(work.saved(), owned=True)
        self._late_twins(batch, results)
        return self._answers(batch, results, write_set.notification_ids, write_set)

    def _late_twins(self, batch: Sequence[c.Command], results: list[Any]) -> None:
        """A refusal may only mean that a twin with the same key committed meanwhile
        (after this batch read the command log): then the twin's answer is the answer."""
        refused = [
            i
            for i, r in enumerate(results)
            if isinstance(r, DomainError) and not batch[i].generated_id
        ]
        if refused:
            seen = self._command_log([batch[i].command_id or "" for i in refused])
            for i in refused:
                row = seen.get(batch[i].command_id or "")
                if row is not None:
                    results[i] = self._replay(batch[i], row)

    def _answers(
        self,
        batch: Sequence[c.Command],
        results: list[Any],
        ids: list[int],
        write_set: WriteSet | None = None,
    ) -> list[Result | BaseException]:
        answers: list[Result | BaseException] = []
        start = 0
        for cmd, result in zip(batch, results, strict=True):
            if isinstance(result, _Saved):
                answers.append(
                    Result(
                        cmd.command_id or "",
                        result.outcome,
                        tuple(ids[start : start + result.count]),
                        receipt=make_receipt(
                            write_set and write_set.ledger_id,
                            write_set.leaves[start : start + result.count] if write_set else [],
                        ),
                    )
                )
                start += result.count
            elif isinstance(result, _Twin):
                first = answers[result.index]
                if (
                    isinstance(first, Result)
                    and cmd.fingerprint() == batch[result.index].fingerprint()
                ):
                    answers.append(replace(first, replayed=True))
                else:
                    answers.append(_reused(cmd))
            else:
                answers.append(result)
        return answers

    def _command_log(self, command_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not command_ids:
            return {}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                "SELECT command_id, command, fingerprint, outcome, notification_ids"
                " FROM command_log WHERE command_id = ANY(%s)",
                (command_ids,),
                prepare=True,
            ).fetchall()
        return {row["command_id"]: row for row in rows}

    def _replay(self, cmd: c.Command, row: dict[str, Any]) -> Result | BaseException:
        if row["command"] != cmd.name or row["fingerprint"] != cmd.fingerprint():
            return _reused(cmd)
        outcome = row["outcome"] if isinstance(row["outcome"], dict) else json.loads(row["outcome"])
        ids = tuple(row["notification_ids"])
        return Result(
            cmd.command_id or "", outcome, ids, replayed=True, receipt=self._stored_receipt(ids)
        )

    def _stored_receipt(self, ids: tuple[int, ...]) -> Receipt | None:
        """A retry's receipt: the first answer's, read back from the chain."""
        if not ids:
            return None
        with self.datastore.get_connection() as conn:
            leaves = leaves_for(conn, ids)
            return make_receipt(ledger_id(conn), [leaves[i] for i in ids if i in leaves])


def _moved_on(conn: Connection[Any], ids: list[UUID], versions: list[int]) -> list[UUID]:
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


def _events_after(conn: Connection[Any], ids: list[UUID], versions: list[int]) -> list[Any]:
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


def _version(aggregate: Aggregate | None) -> int:
    return aggregate.version if aggregate is not None else 0


def _clone(aggregate: Aggregate) -> Aggregate:
    """A copy that shares immutable values (enums, datetimes, frozen dataclasses).

    Aggregate state here is one level deep: the only containers are dicts and lists
    of immutable values, so copying those is as safe as a deepcopy and far cheaper.
    """
    twin = object.__new__(type(aggregate))
    for name, value in vars(aggregate).items():
        if isinstance(value, dict | list):
            value = type(value)(value)
        setattr(twin, name, value)
    return twin


@dataclass(frozen=True, slots=True)
class _Saved:
    outcome: dict[str, Any]
    count: int


@dataclass(frozen=True, slots=True)
class _Twin:
    index: int


def _reused(cmd: c.Command) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"idempotency key {cmd.command_id!r} was already used for a different command; "
        "use a new key for a new command",
        field="command_id",
    )

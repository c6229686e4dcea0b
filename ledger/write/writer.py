"""The writer: every command of every interface enters the ledger through ``execute``.

``execute`` resolves what the command names (``resolve``), authorises it, checks its
clock, answers retries from the idempotency log and runs it — in a group-committed
batch or on its own — so that a command either appends all its events (with its
idempotency row) in one transaction or appends nothing. ``execute_many`` runs a batch
that arrived together (an import, the bulk generator) as one such batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger import commands as c
from ledger.domain.common import Context, check_occurred_at, item_id
from ledger.domain.errors import ConcurrencyConflict, DomainError, WrongLibrary
from ledger.domain.identity import IdentityHasher
from ledger.domain.items import Item
from ledger.integrity.receipts import make_receipt
from ledger.write import idempotency
from ledger.write.group_commit import GroupCommitter
from ledger.write.handlers import HANDLERS
from ledger.write.resolve import Resolver
from ledger.write.result import Result
from ledger.write.work import BatchWork, Poisoned, UnitOfWork, WriteSet


class Writer:
    """Records what happens at member libraries' desks; refuses what breaks a rule."""

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        hasher: IdentityHasher,
        loan_limit: int = 20,
        group_commit: bool = True,
    ) -> None:
        self.uow = uow
        self.hasher = hasher
        self.loan_limit = loan_limit
        self.resolve = Resolver(uow, hasher)
        self._committer: GroupCommitter[c.Command, Result] | None = (
            GroupCommitter(self._run_batch, name="tongjie-group-commit") if group_commit else None
        )

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        self.uow.close()

    # ------------------------------------------------------------- commands

    def execute(self, command: c.Command) -> Result:
        """Record one command; raise the ``DomainError`` that refused it."""
        command = self._prepare(command)
        if isinstance(command, c.RegisterReader) and command.known:
            return self._known_reader(command)
        if self._committer is not None:
            return self._committer.submit(command)
        result = self._run_batch([command])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def execute_many(self, commands: Sequence[c.Command]) -> list[Result | BaseException]:
        """Record commands that arrived together, in order, saved together: each answer is
        its own (a refusal never stops the rest) and each command is atomic on its own.
        A refusal is its ``DomainError``; a failure of the database its own exception."""
        answers: list[Result | BaseException | None] = [None] * len(commands)
        ready: list[tuple[int, c.Command]] = []
        for index, command in enumerate(commands):
            try:
                prepared = self._prepare(command)
                if isinstance(prepared, c.RegisterReader) and prepared.known:
                    answers[index] = self._known_reader(prepared)
                else:
                    ready.append((index, prepared))
            except DomainError as error:
                answers[index] = error
        results = self._run_batch([command for _, command in ready]) if ready else []
        for (index, _), result in zip(ready, results, strict=True):
            answers[index] = result
        return [a for a in answers if a is not None]

    # --------------------------------------------------------------- queries

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        """Current states, by replay of their streams (cached); absent ones map to None."""
        return self.uow.load(ids)

    def get_item(self, owner: str, barcode: str) -> Item | None:
        aggregate = self.load([item_id(owner, barcode)])[item_id(owner, barcode)]
        return aggregate if isinstance(aggregate, Item) else None

    def find_reader(self, number: str) -> UUID:
        return self.resolve.reader(number)

    # ------------------------------------------------------------ preparing

    def _prepare(self, command: c.Command) -> c.Command:
        command = self.resolve(command)
        _authorise(command)
        now = datetime.now(UTC)
        occurred_at = check_occurred_at(command.occurred_at or now, now)
        if command.command_id:  # fingerprinted as sent: a retry must repeat that
            return replace(command, occurred_at=occurred_at, digest=command.fingerprint())
        # A made-up key can never be retried, so there is nothing to fingerprint.
        return replace(
            command, occurred_at=occurred_at, command_id=f"auto-{uuid4()}", generated_id=True
        )

    def _known_reader(self, command: c.RegisterReader) -> Result:
        """The person is registered already: a retry replays, anything else names the reader."""
        if not command.generated_id:
            row = self.uow.logged([command.command_id or ""]).get(command.command_id or "")
            if row is not None:
                replayed = idempotency.replay(command, row, self.uow.receipt)
                if isinstance(replayed, BaseException):
                    raise replayed
                return replayed
        assert command.reader_id is not None
        reader = self.uow.load([command.reader_id])[command.reader_id]
        return Result(
            command_id="" if command.generated_id else command.command_id or "",
            outcome={
                "reader_id": str(command.reader_id),
                "masked_number": command.masked_number,
                "home_library": getattr(reader, "home_library", None),
                "created": False,
            },
            notification_ids=(),
        )

    # ------------------------------------------------------------- batches

    def _run_batch(self, batch: Sequence[c.Command]) -> list[Result | BaseException]:
        """Try the batch as one transaction; if that fails, give each command its own."""
        if len(batch) == 1:
            return [self._run_alone(batch[0])]
        try:
            return self._try_batch(batch)
        except (Poisoned, IntegrityError):
            return [self._run_alone(command) for command in batch]

    def _run_alone(self, command: c.Command) -> Result | BaseException:
        try:
            return self._try_batch([command])[0]
        except Poisoned as poisoned:
            return poisoned.__cause__ or poisoned
        except IntegrityError as error:
            return self._after_integrity_error(command, error)
        except BaseException as error:  # answered to its own caller, never to the batch
            return error

    def _after_integrity_error(
        self, command: c.Command, error: IntegrityError
    ) -> Result | BaseException:
        constraint = self.uow.violated(error)
        if not command.generated_id and self.uow.logged([command.command_id or ""]):
            constraint = "command_log_pkey"  # a twin with the same key won: answer as it did
        if constraint == "command_log_pkey":
            try:  # the concurrent twin committed first: answer from its row
                return self._try_batch([command])[0]
            except BaseException as again:
                return again
        if constraint == "reader_identities_pkey" and isinstance(command, c.RegisterReader):
            existing = self.uow.reader_for_hmac(command.identity_hmac)
            if existing is None:
                return ConcurrencyConflict("reader registration raced with a deletion; retry")
            return self._known_reader(replace(command, reader_id=existing, known=True))
        return ConcurrencyConflict(
            "another command changed this record at the same moment; nothing was recorded, "
            "retry with fresh state",
        )

    def _try_batch(self, batch: Sequence[c.Command]) -> list[Result | BaseException]:
        results: list[Any] = [None] * len(batch)
        seen = self.uow.logged([cmd.command_id or "" for cmd in batch if not cmd.generated_id])
        work = BatchWork(self.uow, {}, self.loan_limit)
        ids: set[UUID] = set()
        for cmd in batch:
            ids |= cmd.aggregate_ids()
        cached = self.uow.peek(ids)
        for cmd in batch:  # a cached item already names its loan's reader: one query, not two
            ids |= cmd.dependent_ids(cached)
        work.loaded.update(self.uow.load(ids))
        extra: set[UUID] = set()
        for cmd in batch:
            extra |= cmd.dependent_ids(work.loaded)
        work.loaded.update(self.uow.load(extra - work.loaded.keys()))

        write_set = WriteSet()
        events: list[Any] = []
        pending: dict[str, int] = {}  # command_id → index of the first in this batch
        for index, cmd in enumerate(batch):
            command_id = cmd.command_id or ""
            if command_id in seen:
                results[index] = idempotency.replay(cmd, seen[command_id], self.uow.receipt)
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
                    raise Poisoned from error
                results[index] = error
                continue
            new_events = work.drain()
            events.extend(new_events)
            write_set.commands.append(idempotency.row_for(cmd, outcome, len(new_events)))
            write_set.extend(work.staged)
            pending[command_id] = index
            results[index] = _Saved(outcome, len(new_events))

        if events:
            self.uow.commit(events, write_set)
            self.uow.remember(work.saved())
        self._late_twins(batch, results)
        return self._answers(batch, results, write_set)

    def _late_twins(self, batch: Sequence[c.Command], results: list[Any]) -> None:
        """A refusal may only mean that a twin with the same key committed meanwhile
        (after this batch read the command log): then the twin's answer is the answer."""
        refused = [
            i
            for i, r in enumerate(results)
            if isinstance(r, DomainError) and not batch[i].generated_id
        ]
        if refused:
            seen = self.uow.logged([batch[i].command_id or "" for i in refused])
            for i in refused:
                row = seen.get(batch[i].command_id or "")
                if row is not None:
                    results[i] = idempotency.replay(batch[i], row, self.uow.receipt)

    def _answers(
        self, batch: Sequence[c.Command], results: list[Any], write_set: WriteSet
    ) -> list[Result | BaseException]:
        answers: list[Result | BaseException] = []
        ids = write_set.notification_ids
        start = 0
        for cmd, result in zip(batch, results, strict=True):
            if isinstance(result, _Saved):
                end = start + result.count
                answers.append(
                    Result(
                        cmd.command_id or "",
                        result.outcome,
                        tuple(ids[start:end]),
                        receipt=make_receipt(write_set.ledger_id, write_set.leaves[start:end]),
                    )
                )
                start = end
            elif isinstance(result, _Twin):
                first = answers[result.index]
                if (
                    isinstance(first, Result)
                    and cmd.fingerprint() == batch[result.index].fingerprint()
                ):
                    answers.append(replace(first, replayed=True))
                else:
                    answers.append(idempotency.reused(cmd))
            else:
                answers.append(result)
        return answers


def _authorise(command: c.Command) -> None:
    actor = command.actor
    if actor.library is not None and actor.library != command.library:
        raise WrongLibrary(
            f"a key of {actor.library} records only what happens at {actor.library}, "
            f"not at {command.library}",
            field="library",
        )


@dataclass(frozen=True, slots=True)
class _Saved:
    outcome: dict[str, Any]
    count: int


@dataclass(frozen=True, slots=True)
class _Twin:
    index: int

"""A long circulation history, fast: for benchmarks that need a million events and more.

Same domain, same recorder, fewer round trips. Commands are built as values and
applied by the ledger's own handlers (``ledger.handlers``) to aggregates kept in
memory, so every rule runs and every event is exactly what a desk would record;
the events are then saved thousands at a time through the application's event store
(``Circulation.events.put``), so the recorder writes them with everything it adds in
its transaction (loan and transfer references, identity links, and whatever later
issues add there, such as the tamper-evidence chain). What it skips: the idempotency
rows of ``command_log`` (no command of a generated history is ever retried) and the
group committer's per-command round trips.

The consortium is the demo's 249 libraries. Each simulated day returns a share of
the loans (mostly where they were borrowed, some at a neighbouring library or the
reader's home), renews some, ships waiting items home, receives arrivals (a few
shipments are cancelled and re-sent), loses and finds a few, and lends again.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate

from ledger import commands as c
from ledger.application import Circulation
from ledger.demo.consortium import consortium_libraries
from ledger.demo.simulation import identity_number
from ledger.domain.common import CONSORTIUM_TZ, Actor, Context
from ledger.domain.errors import DomainError
from ledger.domain.identity import IdentityHasher, parse_identity_number
from ledger.domain.items import Item
from ledger.handlers import HANDLERS
from ledger.recorder import WriteSet
from ledger.store import eventsourcing_env

ADMIN = Actor("admin:bulk")

#: Events per save: big enough that a save's fixed cost (lock, round trips) vanishes
#: (the recorder sends saves this large without psycopg's pipeline, see PIPELINED_EVENTS).
SAVE_EVERY = 5_000
#: Roughly how many events one day's loan attempts produce (borrow, return, their
#: reader events, and the shipments home): sizes the simulated period.
EVENTS_PER_LOAN = 5.0


@dataclass
class BulkSummary:
    events: int = 0
    days: int = 0
    libraries: int = 0
    items: int = 0
    readers: int = 0
    loans: int = 0
    returns: int = 0
    renewals: int = 0
    transfers: int = 0
    refused: dict[str, int] = field(default_factory=dict)


@dataclass
class _Copy:
    owner: str
    barcode: str
    location: str
    status: str = "on_shelf"
    loan_id: UUID | None = None
    lender: str | None = None
    reader: int | None = None
    renewals: int = 0
    transfer_id: UUID | None = None
    arrives: date | None = None


class _MemoryWork:
    """What ``ledger.handlers`` needs, over aggregates held in memory."""

    def __init__(self, aggregates: dict[UUID, Aggregate], loan_limit: int) -> None:
        self.aggregates = aggregates
        self.loan_limit = loan_limit
        self.touched: list[Aggregate] = []
        self.write_set = WriteSet()

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate = self.aggregates.get(aggregate_id)
        if aggregate is not None:
            self.touched.append(aggregate)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        self.aggregates[aggregate.id] = aggregate
        self.touched.append(aggregate)

    def reference(self, reference_id: UUID, kind: str, item: Item) -> None:
        self.write_set.references.append((reference_id, kind, item.id, item.owner, item.barcode))

    def link_identity(self, identity_hmac: str, reader_id: UUID) -> None:
        self.write_set.identities.append((identity_hmac, reader_id))

    def forget(self, reader_id: UUID) -> None:
        self.write_set.forgotten.append(reader_id)


class BulkHistory:
    """Simulate and record; ``run(events)`` stops after the day that reaches ``events``."""

    def __init__(
        self,
        ledger: Circulation,
        *,
        items_per_library: int = 200,
        readers: int = 30_000,
        loans_per_day: int | None = None,
        seed: int = 2021,
        progress: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.items_per_library = items_per_library
        self.reader_count = readers
        self.progress = progress
        self.libraries = consortium_libraries()
        self.circulating = [s.code for s in self.libraries if s.can_circulate]
        self.loans_per_day = loans_per_day or max(
            50, len(self.circulating) * items_per_library // 20
        )
        self.neighbours = self._neighbours()
        self.aggregates: dict[UUID, Aggregate] = {}
        self.work = _MemoryWork(self.aggregates, loan_limit=ledger.loan_limit)
        self.pending: list[Any] = []
        self.copies: list[_Copy] = []
        self.readers: list[tuple[UUID, str]] = []
        self.open_loans: list[int] = []
        self.summary = BulkSummary()
        self.floats: dict[str, bool] = {}
        self.renewals_allowed: dict[str, int] = {}

    def _neighbours(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for spec in self.libraries:
            if spec.can_circulate:
                groups.setdefault(spec.parent_code or spec.code, []).append(spec.code)
        return {
            s.code: [x for x in groups.get(s.parent_code or s.code, []) if x != s.code]
            or self.circulating
            for s in self.libraries
        }

    # ------------------------------------------------------------ recording

    def _do(self, command: c.Command) -> dict[str, Any] | None:
        ctx = Context(
            occurred_at=command.occurred_at or datetime.now(UTC),
            library=command.library,
            recorded_by=command.actor.principal,
            command_id=command.command_id or "",
        )
        self.work.touched = []
        try:
            outcome = HANDLERS[type(command)](command, ctx, self.work)
        except DomainError as error:
            if any(a.pending_events for a in self.work.touched):
                raise RuntimeError(f"a refused command changed state: {error!r}") from error
            self.summary.refused[error.code] = self.summary.refused.get(error.code, 0) + 1
            return None
        for aggregate in self.work.touched:  # collecting twice yields nothing the second time
            self.pending.extend(aggregate.collect_events())
        if len(self.pending) >= SAVE_EVERY:
            self.save()
        return outcome

    def save(self) -> None:
        if not self.pending:
            return
        self.ledger.events.put(self.pending, write_set=self.work.write_set)
        self.summary.events += len(self.pending)
        self.progress(len(self.pending))
        self.pending = []
        self.work.write_set = WriteSet()

    # ------------------------------------------------------------- the run

    def run(self, events: int) -> BulkSummary:
        days = math.ceil(events / (self.loans_per_day * EVENTS_PER_LOAN)) * 2 + 2
        today = datetime.now(CONSORTIUM_TZ).date()
        day0 = today - timedelta(days=days)
        self._set_up(day0)
        day = day0
        while self.summary.events + len(self.pending) < events:
            day += timedelta(days=1)
            if day >= today:
                raise RuntimeError(
                    f"reached today after {self.summary.days} days with "
                    f"{self.summary.events} events; raise items_per_library or loans_per_day"
                )
            self._day(day)
            self.summary.days += 1
        self.save()
        return self.summary

    def _at(self, day: date, start_hour: int, end_hour: int) -> datetime:
        local = datetime.combine(day, time(start_hour), CONSORTIUM_TZ) + timedelta(
            seconds=self.rng.randrange(0, (end_hour - start_hour) * 3600)
        )
        return local.astimezone(UTC)

    def _set_up(self, day0: date) -> None:
        for spec in self.libraries:
            floats = spec.level == "county" and self.rng.random() < 0.3
            policy = {
                "loan_days": 30 if spec.level != "county" else 21,
                "renewals_allowed": 1,
                "renewal_days": 30,
                "return_mode": "float" if floats else "return_to_owner",
            }
            self.floats[spec.code] = floats
            self.renewals_allowed[spec.code] = 1
            self._do(
                c.JoinLibrary(
                    code=spec.code,
                    library_name=spec.name,
                    region=spec.region,
                    level=spec.level,
                    policy=policy,
                    can_circulate=spec.can_circulate,
                    actor=ADMIN,
                    library=spec.code,
                    occurred_at=self._at(day0, 8, 9),
                )
            )
            self.summary.libraries += 1
        for spec in self.libraries:
            for n in range(self.items_per_library):
                copy = _Copy(spec.code, f"{spec.code[-6:]}{n:06d}", spec.code)
                if self._do(
                    c.RegisterItem(
                        owner=copy.owner,
                        barcode=copy.barcode,
                        title=f"馆藏图书 {copy.barcode}",
                        isbn=None,
                        library=copy.owner,
                        actor=_desk(copy.owner),
                        occurred_at=self._at(day0, 9, 12),
                    )
                ):
                    self.copies.append(copy)
        self.summary.items = len(self.copies)
        hasher = self.ledger.hasher
        seen: set[str] = set()
        while len(self.readers) < self.reader_count:
            home = self.rng.choice(self.circulating)
            division = home[3:9] if not home[3:9].endswith("0000") else home[3:5] + "0100"
            identity = parse_identity_number(identity_number(self.rng, division))
            digest = hasher.digest(identity)
            if digest in seen:  # the same person drawn twice: draw another
                continue
            seen.add(digest)
            reader_id = UUID(int=self.rng.getrandbits(128), version=4)
            if self._do(
                c.RegisterReader(
                    identity_hmac=digest,
                    masked_number=identity.masked(),
                    reader_id=reader_id,
                    library=home,
                    actor=_desk(home),
                    occurred_at=self._at(day0, 12, 20),
                )
            ):
                self.readers.append((reader_id, home))
                self.open_loans.append(0)
        self.summary.readers = len(self.readers)

    def _day(self, day: date) -> None:
        rng = self.rng
        for copy in self.copies:
            status = copy.status
            if status == "in_transit":
                if copy.arrives is not None and copy.arrives <= day:
                    if rng.random() < 0.03:
                        self._cancel_and_resend(copy, day)
                    else:
                        self._receive(copy, day)
            elif status == "on_loan":
                roll = rng.random()
                if roll < 1 / 18:
                    self._return(copy, day)
                elif roll < 1 / 18 + 1 / 60 and copy.renewals < 1:
                    self._renew(copy, day)
                elif roll > 1 - 1 / 5000:
                    self._lose(copy, day)
            elif status == "awaiting_transfer":
                if rng.random() < 0.7:
                    self._dispatch(copy, day)
            elif status == "lost" and rng.random() < 1 / 30:
                self._find(copy, day)
        shelves: dict[str, list[_Copy]] = {}
        for copy in self.copies:
            if copy.status == "on_shelf":
                shelves.setdefault(copy.location, []).append(copy)
        for _ in range(self.loans_per_day):
            reader = rng.randrange(len(self.readers))
            home = self.readers[reader][1]
            roll = rng.random()
            at = (
                home
                if roll < 0.82
                else rng.choice(self.neighbours[home])
                if roll < 0.96
                else rng.choice(self.circulating)
            )
            shelf = shelves.get(at)
            if not shelf or self.open_loans[reader] >= 5:
                continue
            copy = shelf.pop(rng.randrange(len(shelf)))
            self._borrow(copy, reader, at, day)

    # ------------------------------------------------------------ commands

    def _borrow(self, copy: _Copy, reader: int, at: str, day: date) -> None:
        outcome = self._do(
            c.Borrow(
                owner=copy.owner,
                barcode=copy.barcode,
                reader_id=self.readers[reader][0],
                library=at,
                actor=_desk(at),
                occurred_at=self._at(day, 14, 20),
            )
        )
        if outcome is not None:
            copy.status, copy.loan_id, copy.lender = "on_loan", UUID(outcome["loan_id"]), at
            copy.location, copy.reader, copy.renewals = at, reader, 0
            self.open_loans[reader] += 1
            self.summary.loans += 1

    def _renew(self, copy: _Copy, day: date) -> None:
        assert copy.loan_id is not None and copy.lender is not None
        at = copy.lender
        if self._do(
            c.Renew(
                owner=copy.owner,
                barcode=copy.barcode,
                loan_id=copy.loan_id,
                library=at,
                actor=_desk(at),
                occurred_at=self._at(day, 9, 14),
            )
        ):
            copy.renewals += 1
            self.summary.renewals += 1

    def _return(self, copy: _Copy, day: date) -> None:
        assert copy.lender is not None
        at = copy.lender
        roll = self.rng.random()
        if roll < 0.15:
            at = self.rng.choice(self.neighbours[copy.lender])
        elif roll < 0.22 and copy.reader is not None:
            at = self.readers[copy.reader][1]
        outcome = self._do(
            c.Return(
                owner=copy.owner,
                barcode=copy.barcode,
                library=at,
                actor=_desk(at),
                occurred_at=self._at(day, 9, 14),
            )
        )
        if outcome is not None:
            waiting = outcome["disposition"] == "transfer_to_owner"
            copy.status = "awaiting_transfer" if waiting else "on_shelf"
            copy.location = at
            self._close_loan(copy)
            self.summary.returns += 1

    def _close_loan(self, copy: _Copy) -> None:
        if copy.reader is not None:
            self.open_loans[copy.reader] -= 1
        copy.loan_id = copy.lender = copy.reader = None

    def _dispatch(self, copy: _Copy, day: date) -> None:
        outcome = self._do(
            c.Dispatch(
                owner=copy.owner,
                barcode=copy.barcode,
                to_library=copy.owner,
                library=copy.location,
                actor=_desk(copy.location),
                occurred_at=self._at(day, 9, 14),
            )
        )
        if outcome is not None:
            copy.status, copy.transfer_id = "in_transit", UUID(outcome["transfer_id"])
            copy.arrives = day + timedelta(days=self.rng.choice([1, 2, 2, 3, 5]))
            self.summary.transfers += 1

    def _receive(self, copy: _Copy, day: date) -> None:
        assert copy.transfer_id is not None
        if self._do(
            c.Receive(
                owner=copy.owner,
                barcode=copy.barcode,
                transfer_id=copy.transfer_id,
                library=copy.owner,
                actor=_desk(copy.owner),
                occurred_at=self._at(day, 9, 14),
            )
        ):
            copy.status, copy.location, copy.transfer_id = "on_shelf", copy.owner, None

    def _cancel_and_resend(self, copy: _Copy, day: date) -> None:
        assert copy.transfer_id is not None
        if self._do(
            c.CancelTransfer(
                owner=copy.owner,
                barcode=copy.barcode,
                transfer_id=copy.transfer_id,
                reason="plan_changed",
                note="re-sent with the next van",
                library=copy.location,
                actor=_desk(copy.location),
                occurred_at=self._at(day, 9, 11),
            )
        ):
            copy.status, copy.transfer_id = "awaiting_transfer", None
            self._dispatch(copy, day)

    def _lose(self, copy: _Copy, day: date) -> None:
        assert copy.lender is not None
        if self._do(
            c.DeclareLost(
                owner=copy.owner,
                barcode=copy.barcode,
                reason="not returned",
                library=copy.lender,
                actor=_desk(copy.lender),
                occurred_at=self._at(day, 9, 14),
            )
        ):
            copy.status = "lost"
            self._close_loan(copy)

    def _find(self, copy: _Copy, day: date) -> None:
        if self._do(
            c.Found(
                owner=copy.owner,
                barcode=copy.barcode,
                library=copy.location,
                actor=_desk(copy.location),
                occurred_at=self._at(day, 9, 14),
            )
        ):
            copy.status = "on_shelf"


def _desk(code: str) -> Actor:
    return Actor(f"key:{code}", code)


def generate(
    dsn: str,
    events: int,
    *,
    seed: int = 2021,
    items_per_library: int = 200,
    readers: int = 30_000,
    loans_per_day: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> BulkSummary:
    """Record at least ``events`` events of simulated circulation into the (migrated,
    empty) database at ``dsn``; return what was recorded."""
    ledger = Circulation(
        eventsourcing_env(dsn, pool_size=2),
        hasher=IdentityHasher(secrets.token_bytes(32)),
        group_commit=False,
    )
    try:
        summary = BulkHistory(
            ledger,
            items_per_library=items_per_library,
            readers=readers,
            loans_per_day=loans_per_day,
            seed=seed,
            progress=progress,
        ).run(events)
    finally:
        ledger.close()
    with psycopg.connect(dsn, autocommit=True) as conn:  # as after any bulk load: the planner
        conn.execute("ANALYZE")  # must not guess at a table that grew a million rows at once
    return summary

"""A long circulation history, fast: for benchmarks (a million events and more) and tests.

The same model as the demo (``ledger.demo.model``: the 249 libraries, their copies and
readers, and a day's arrivals, returns, renewals, losses and finds, shipments home and
loans), run through the same writer: each planned phase goes to ``Writer.execute_many``
in chunks, so every command is resolved, authorised, checked by the rules and logged
(``command_log``) exactly as a desk's would be. What the fast path skips is the network
per batch: the writer runs over an in-memory unit of work (``BufferingUnitOfWork``)
whose committed events and write-set rows (command_log rows, loan and transfer
references, identity links) are handed to PostgreSQL about ``SAVE_EVERY`` events at a
time, through the ledger's recorder (``LedgerRecorder``: one transaction that also
writes the chain and Merkle rows and assigns notification ids). The saves run in a
process of their own (``ledger.demo.saver``), beside the writer.

Commands carry no idempotency keys (the ledger generates them): nothing here is retried.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate

from ledger.demo.consortium import consortium_libraries
from ledger.demo.model import Model, Phase, Summary
from ledger.demo.saver import read_frame, write_frame
from ledger.domain.common import CONSORTIUM_TZ, Actor
from ledger.domain.identity import IdentityHasher
from ledger.store import eventsourcing_env
from ledger.write import MemoryUnitOfWork, Writer
from ledger.write.postgres import PostgresUnitOfWork
from ledger.write.recorder import LedgerRecorder
from ledger.write.work import LoggedCommand, WriteSet

ADMIN = Actor("admin:bulk")

#: Events per save to PostgreSQL: big enough that a save's fixed cost (lock, round trips)
#: vanishes (the recorder sends saves this large without psycopg's pipeline, see
#: ``ledger.write.recorder.PIPELINED_EVENTS``).
SAVE_EVERY = 5_000
#: Commands per ``execute_many``: in memory a batch has no round trip to amortise, and its
#: cost per command grows with its size (the batch's working set finds aggregates by
#: comparing them); of 10, 25, 50 and 100, 50 measured fastest.
CHUNK = 50
#: Roughly how many events one day's loan attempts produce (borrow, return, their
#: reader events, and the shipments home): sizes the simulated period.
EVENTS_PER_LOAN = 5.0


@dataclass
class BulkSummary(Summary):
    """The model's summary, with how many events were saved over how many days."""

    events: int = 0
    days: int = 0


class BufferingUnitOfWork(MemoryUnitOfWork):
    """The in-memory unit of work, whose commits are buffered for PostgreSQL.

    It checks a commit as ``MemoryUnitOfWork`` does (one event per aggregate version, one
    row per command id, reference and identity key) and keeps what the writer reads in
    memory: states, references, identity links, and the command rows not yet saved. The
    events and side rows of each commit wait, in commit order, until ``flush`` hands them
    to PostgreSQL in one save; rows and events keep the same order, so each command row's
    ``event_count`` still slices the merged save's events. Saved events and command rows
    leave memory: history and the command log are then read back from PostgreSQL.

    Saves run one at a time, in commit order, in a process of their own (started at the
    first save that need not be waited for): encoding, chaining and sending a save costs
    about half as much as the writer's work on it, so the two run side by side on two
    cores instead of taking turns under one interpreter lock. A final save with none in
    flight (a small history) is made here.

    One shortcut over ``MemoryUnitOfWork``, for speed only: a committed state is the
    writer's own copy handed over by ``remember`` (as the PostgreSQL unit of work caches
    it) instead of a second application of its events to another copy.
    """

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.recorded = 0  # events committed (saved, being saved or waiting)
        self.flushed = 0  # events saved to PostgreSQL
        self._events: list[Any] = []
        self._rows = WriteSet()
        self._expected: dict[UUID, int] = {}  # the versions the last commit reached
        self._store: PostgresUnitOfWork | None = None  # in this process, opened when needed
        self._saver: _Saver | None = None  # the saving process, started when needed
        self._saving: WriteSet | None = None  # the rows of the save in flight

    @property
    def waiting(self) -> int:
        """Events committed but not yet handed to PostgreSQL."""
        return len(self._events)

    def _append(self, events: Sequence[Any], write_set: WriteSet) -> list[int]:
        """Buffer the save for PostgreSQL; the states come from ``remember``."""
        first = self.recorded + 1
        self.recorded += len(events)
        for event in events:
            self._expected[event.originator_id] = event.originator_version
        self._events.extend(events)
        self._rows.extend(write_set)
        return list(range(first, first + len(events)))

    def remember(self, aggregates: Iterable[Aggregate]) -> None:
        """The committed states: exactly the versions the last commit reached."""
        with self._lock:
            for aggregate in aggregates:
                if self._expected.pop(aggregate.id, None) != aggregate.version:
                    raise RuntimeError(f"{aggregate.id} was not committed at {aggregate.version}")
                self._states[aggregate.id] = aggregate
            if self._expected:
                raise RuntimeError(f"no committed state for {sorted(self._expected)}")

    # ------------------------------------------------------------- saving

    def flush(self, *, wait: bool = True) -> int:
        """Hand what waits to PostgreSQL as one save, after the save before it; with
        ``wait``, until everything is saved. Return how many events were saved meanwhile."""
        saved = 0
        if self._events:
            events, rows = self._events, self._rows
            self._events, self._rows = [], WriteSet()
            saved += self._collect()
            if self._saver is None and not wait:
                self._saver = _Saver(self.dsn)
            if self._saver is None:  # nothing in flight, nothing to overlap: save it here
                self._here().commit(events, rows)
                saved += self._saved(len(events), rows)
            else:
                self._saver.submit(events, rows)
                self._saving = rows
        if wait:
            saved += self._collect()
        return saved

    def _collect(self) -> int:
        """Wait for the save in flight (raising what failed it); its event count."""
        if self._saving is None:
            return 0
        assert self._saver is not None
        rows, self._saving = self._saving, None
        return self._saved(self._saver.result(), rows)

    def _saved(self, count: int, rows: WriteSet) -> int:
        with self._lock:  # the command log is read back from PostgreSQL from now on
            for row in rows.commands:
                self.command_log.pop(row.command_id, None)
            self.flushed += count
        return count

    def _here(self) -> PostgresUnitOfWork:
        if self._store is None:
            self._store = PostgresUnitOfWork(eventsourcing_env(self.dsn, pool_size=1))
        return self._store

    # ------------------------------------------------- reading back, closing

    def logged(self, command_ids: Sequence[str]) -> dict[str, LoggedCommand]:
        found = super().logged(command_ids)
        missing = [i for i in command_ids if i not in found]
        if missing and self.flushed:
            found.update(self._here().logged(missing))
        return found

    def streams(self, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        self.flush()
        return self._here().streams(ids)

    def close(self) -> None:
        try:
            self._collect()
        finally:
            if self._saver is not None:
                self._saver.close()
            if self._store is not None:
                self._store.close()


class _Saver:
    """The saving process (``ledger.demo.saver``): saves in order, one in flight at most."""

    def __init__(self, dsn: str) -> None:
        import ledger

        root = str(Path(ledger.__file__).resolve().parent.parent)  # where ledger imports from
        path = os.environ.get("PYTHONPATH")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledger.demo.saver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")},
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests, self.answers = self.process.stdin, self.process.stdout
        write_frame(self.requests, (dsn, LedgerRecorder.chain_events))

    def submit(self, events: list[Any], rows: WriteSet) -> None:
        write_frame(self.requests, (events, rows))

    def result(self) -> int:
        try:
            status, value = read_frame(self.answers)
        except EOFError:
            raise RuntimeError(
                f"the saving process ended (exit status {self.process.wait()})"
            ) from None
        if status != "saved":
            raise value
        return int(value)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # end of input: it closes its store, ends
            self.requests.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.answers.close()


class BulkHistory:
    """Simulate and record; ``run(events)`` stops after the day that reaches ``events``."""

    def __init__(
        self,
        writer: Writer,
        uow: BufferingUnitOfWork,
        *,
        items_per_library: int = 200,
        readers: int = 30_000,
        loans_per_day: int | None = None,
        seed: int = 2021,
        progress: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.writer = writer
        self.uow = uow
        self.progress = progress
        circulating = sum(spec.can_circulate for spec in consortium_libraries())
        self.model = Model(
            seed=seed,
            items_per_library=items_per_library,
            readers=readers,
            loans_per_day=loans_per_day or max(50, circulating * items_per_library // 20),
            admin=ADMIN,
        )

    def run(self, events: int) -> BulkSummary:
        model = self.model
        days = math.ceil(events / (model.loans_per_day * EVENTS_PER_LOAN)) * 2 + 2
        today = datetime.now(CONSORTIUM_TZ).date()
        day = today - timedelta(days=days)
        self._run(model.setup(day))
        simulated = 0
        while self.uow.recorded < events:
            day += timedelta(days=1)
            if day >= today:
                raise RuntimeError(
                    f"reached today after {simulated} days with {self.uow.recorded} "
                    "events; raise items_per_library or loans_per_day"
                )
            self._run(model.day(day))
            simulated += 1
        self._flush()
        return BulkSummary(events=self.uow.flushed, days=simulated, **vars(model.summary))

    def _run(self, phases: Iterable[Phase]) -> None:
        for phase in phases:  # each planned once the previous one is settled
            steps = phase.steps
            for start in range(0, len(steps), CHUNK):
                chunk = steps[start : start + CHUNK]
                answers = self.writer.execute_many([step.command for step in chunk])
                for step, answer in zip(chunk, answers, strict=True):
                    self.model.settle(step, answer)
                if self.uow.waiting >= SAVE_EVERY:
                    self._flush(wait=False)

    def _flush(self, *, wait: bool = True) -> None:
        if saved := self.uow.flush(wait=wait):
            self.progress(saved)


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
    uow = BufferingUnitOfWork(dsn)
    writer = Writer(uow, hasher=IdentityHasher(secrets.token_bytes(32)), group_commit=False)
    # Hundreds of thousands of states and buffered events live for the whole run: the
    # cyclic collector would rescan them every few thousand allocations (a third of the
    # run's time), and nothing here leaves cycles for it to find.
    collecting = gc.isenabled()
    gc.disable()
    try:
        summary = BulkHistory(
            writer,
            uow,
            items_per_library=items_per_library,
            readers=readers,
            loans_per_day=loans_per_day,
            seed=seed,
            progress=progress,
        ).run(events)
    finally:
        writer.close()
        if collecting:
            gc.enable()
    with psycopg.connect(dsn, autocommit=True) as conn:  # as after any bulk load: the planner
        conn.execute("ANALYZE")  # must not guess at a table that grew a million rows at once
    return summary

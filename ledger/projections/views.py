"""The read side in one object: what the API (and any other entry point) asks of it.

Each call is one query on the read models, optionally after waiting until the
projections it reads have folded a given position (read-your-writes: a command's
response names the positions of its events).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ledger.domain.errors import (
    InvalidInput,
    PositionNotRecorded,
    ProjectionBehind,
    UnknownLibrary,
)
from ledger.eventlog import EventLog
from ledger.projections import REGISTRY, current_loans, custody, history
from ledger.projections import item_locations as locations
from ledger.projections import library_balances as balances
from ledger.projections import paging as pg
from ledger.projections import tracking as t
from ledger.projections import transits as shipments


class Views:
    def __init__(
        self, log: EventLog, *, transit_overdue_days: int = 7, read_wait: float = 5.0
    ) -> None:
        self.log = log
        self.transit_overdue_days = transit_overdue_days
        self.read_wait = read_wait

    @contextmanager
    def _conn(self, names: Sequence[str], after: int | None) -> Iterator[tuple[Any, int]]:
        """A connection, once the projections have folded ``after``; and their position."""
        with self.log.connection() as conn:
            if after:
                self._wait(conn, names, after)
            reached = t.positions(conn, names)
            yield conn, min((reached.get(n, 0) for n in names), default=0)

    def _wait(self, conn: Any, names: Sequence[str], after: int) -> None:
        """Read-your-writes: positions come from command answers, so one past the log's
        end was never recorded (refused at once); one not folded yet is waited for."""
        last = t.head(conn)
        if after > last:
            raise PositionNotRecorded(
                f"position {after} was never recorded: the log ends at {last}", field="after"
            )
        if not t.wait_for(conn, names, after, self.read_wait):
            reached = min(t.positions(conn, names).values(), default=0)
            raise ProjectionBehind(
                f"the read models ({', '.join(names)}) have not reached position {after} "
                f"after {self.read_wait:g}s (they are at {reached}); retry shortly, or check "
                "that the projection worker (tongjie project) runs"
            )

    # ------------------------------------------------------------ read models

    def items(
        self,
        *,
        library: str | None = None,
        owner: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> pg.Page:
        if status is not None and status not in locations.STATUSES:
            raise InvalidInput(f"status is one of {', '.join(locations.STATUSES)}", field="status")
        n = pg.check_limit(limit)
        key = pg.decode(cursor, (pg.TEXT, pg.TEXT))
        with self._conn([locations.NAME], after) as (conn, position):
            rows = locations.query(
                conn, library=library, owner=owner, status=status, after=key, limit=n
            )
        return pg.finish(rows, n, ("owner", "barcode"), position)

    def loans(
        self,
        *,
        library: str | None = None,
        reader_id: UUID | None = None,
        overdue: bool = False,
        at: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> pg.Page:
        n = pg.check_limit(limit)
        key = pg.decode(cursor, (pg.TIMESTAMP, pg.UUID_))
        names = [current_loans.NAME, locations.NAME]
        with self._conn(names, after) as (conn, position):
            rows = current_loans.query(
                conn,
                at=at or datetime.now(UTC),
                library=library,
                reader_id=reader_id,
                overdue=overdue,
                after=key,  # type: ignore[arg-type]
                limit=n,
            )
        return pg.finish(rows, n, ("due_at", "item_id"), position)

    def transits(
        self,
        *,
        from_library: str | None = None,
        to_library: str | None = None,
        overdue: bool = False,
        at: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> pg.Page:
        n = pg.check_limit(limit)
        key = pg.decode(cursor, (pg.TIMESTAMP, pg.UUID_))
        names = [shipments.NAME, locations.NAME]
        with self._conn(names, after) as (conn, position):
            rows = shipments.query(
                conn,
                at=at or datetime.now(UTC),
                overdue_days=self.transit_overdue_days,
                from_library=from_library,
                to_library=to_library,
                overdue=overdue,
                after=key,  # type: ignore[arg-type]
                limit=n,
            )
        return pg.finish(rows, n, ("dispatched_at", "item_id"), position)

    def balance(self, library: str, *, after: int | None = None) -> dict[str, Any]:
        with self._conn([balances.NAME], after) as (conn, position):
            row = balances.query(conn, library)
        if row is None:
            raise UnknownLibrary(f"no member library {library}", field="library")
        return {**row, "position": position}

    def holdings(
        self,
        library: str,
        at: datetime,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> pg.Page:
        if at.tzinfo is None:
            raise InvalidInput("as_of needs a time zone offset", field="as_of")
        n = pg.check_limit(limit)
        key = pg.decode(cursor, (pg.TEXT, pg.UUID_))
        names = [custody.NAME, locations.NAME, balances.NAME]
        with self._conn(names, after) as (conn, position):
            if balances.query(conn, library) is None:
                raise UnknownLibrary(f"no member library {library}", field="library")
            rows = custody.holdings(conn, library, at, after=key, limit=n)  # type: ignore[arg-type]
        return pg.finish(rows, n, ("owner", "item_id"), position)

    # ------------------------------------------------------- from the streams

    def history(self, owner: str, barcode: str) -> history.History:
        return history.history(self.log, owner, barcode)

    def as_of(
        self, owner: str, barcode: str, at: datetime, basis: history.Basis = "occurred"
    ) -> history.AsOf:
        return history.as_of(self.log, owner, barcode, at, basis)

    # -------------------------------------------------------------- operations

    def lag(self) -> dict[str, dict[str, Any]]:
        with self.log.connection() as conn:
            return t.lag(conn, list(REGISTRY))

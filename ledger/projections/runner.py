"""The live path: follow the notification log and fold new events, exactly once.

Each step reads a page of events after the lowest tracked position, then in ONE
transaction locks the projections' tracking rows, loads just the rows the page
touches, applies the same handlers the rebuild uses, writes the changed rows back
and advances the tracking positions. A crash anywhere rolls the whole step back; a
restart resumes from the committed positions, so nothing is lost or applied twice.
Between steps the worker sleeps on the recorder's NOTIFY channel (with a polling
fallback), so a committed command reaches the views within milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ledger.eventlog import Record, read_page, to_records
from ledger.projections import REGISTRY
from ledger.projections import tracking as t
from ledger.projections.base import Key, Projection, Table
from ledger.store import EVENTS_TABLE

log = logging.getLogger(__name__)

#: Notification ids per step (one transaction): large enough to amortise the round trips
#: when catching up, small enough that one transaction stays short (tens of milliseconds).
BATCH = 2000
#: How long the worker sleeps without a notification before looking anyway (a NOTIFY
#: can be missed while reconnecting).
POLL_SECONDS = 1.0
#: After an error, wait this long before trying again (the transaction rolled back).
RETRY_SECONDS = 5.0


class LiveRows:
    """``Rows`` over the database: the rows a batch touches, written back at the end."""

    def __init__(self, conn: psycopg.Connection[Any], projection: Projection) -> None:
        self.conn = conn
        self.projection = projection
        self.cache: dict[str, dict[Key, Any]] = defaultdict(dict)
        self.dirty: dict[str, dict[Key, Any]] = defaultdict(dict)
        self.logs: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    # -- Rows
    def get(self, table: str, key: Key) -> Any:
        cached = self.cache[table]
        if key not in cached:
            self._load(self.projection.table_map[table], [key])
        return cached[key]

    def put(self, table: str, key: Key, row: tuple[Any, ...]) -> None:
        self.cache[table][key] = row
        self.dirty[table][key] = row

    def delete(self, table: str, key: Key) -> None:
        self.cache[table][key] = None
        self.dirty[table][key] = None

    def emit(self, table: str, row: tuple[Any, ...]) -> None:
        self.logs[table].append(row)

    # -- loading and writing
    def prefetch(self, records: Iterable[Record]) -> None:
        wanted: dict[str, set[Key]] = defaultdict(set)
        for record in records:
            if record.topic in self.projection.handlers:
                for table, key in self.projection.touches(record):
                    wanted[table].add(key)
        for table, keys in wanted.items():
            missing = [k for k in keys if k not in self.cache[table]]
            if missing:
                self._load(self.projection.table_map[table], missing)

    def _load(self, table: Table, keys: list[Key]) -> None:
        cols = sql.SQL(", ").join(map(sql.Identifier, table.columns))
        if len(table.key) == 1:
            where = sql.SQL("{} = ANY(%s)").format(sql.Identifier(table.key[0]))
            params: list[Any] = [keys]
        else:  # a superset (every combination), narrowed by the cache lookup below
            where = sql.SQL(" AND ").join(
                sql.SQL("{} = ANY(%s)").format(sql.Identifier(k)) for k in table.key
            )
            params = [list({k[i] for k in keys}) for i in range(len(table.key))]
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            cols, sql.Identifier(table.name), where
        )
        cached = self.cache[table.name]
        for row in self.conn.cursor(row_factory=tuple_row).execute(query, params):
            value = table.row(*row)
            cached.setdefault(table.key_of(value), value)
        for key in keys:
            cached.setdefault(key, None)

    def flush(self) -> None:
        for table in self.projection.tables:
            if table.log:
                rows = self.logs.get(table.name)
                if rows:
                    self._insert(table, rows)
                continue
            changes = self.dirty.get(table.name)
            if not changes:
                continue
            gone = [k for k, row in changes.items() if row is None]
            if gone:
                self._delete(table, gone)
            kept = [row for row in changes.values() if row is not None]
            if kept:
                self._upsert(table, kept)

    def _delete(self, table: Table, keys: list[Key]) -> None:
        names = [sql.Identifier(k) for k in table.key]
        query = sql.SQL("DELETE FROM {} WHERE ({}) = ({})").format(
            sql.Identifier(table.name),
            sql.SQL(", ").join(names),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
        )
        params = [(k,) if len(names) == 1 else tuple(k) for k in keys]
        self.conn.cursor().executemany(query, params)

    def _insert(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        query = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
        )
        with self.conn.cursor().copy(query) as copy:
            for row in rows:
                copy.write_row(row)

    def _upsert(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        columns = [sql.Identifier(c) for c in table.columns]
        others = [sql.Identifier(c) for c in table.columns if c not in table.key]
        query = sql.SQL(
            "INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {set}"
        ).format(
            table=sql.Identifier(table.name),
            cols=sql.SQL(", ").join(columns),
            values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            key=sql.SQL(", ").join(map(sql.Identifier, table.key)),
            set=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(c) for c in others),
        )
        self.conn.cursor().executemany(query, rows)


class LiveRunner:
    """Folds new events into the projections, one transaction per step."""

    def __init__(
        self,
        dsn: str,
        projections: list[Projection] | None = None,
        *,
        batch: int = BATCH,
    ) -> None:
        self.dsn = dsn
        self.projections = projections if projections is not None else list(REGISTRY.values())
        self.names = [p.name for p in self.projections]
        self.batch = batch
        self.conn = psycopg.connect(dsn, autocommit=True)
        t.ensure(self.conn, self.names)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LiveRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def step(self) -> int:
        """Fold the next page of events; return how many events were folded (0: caught up).

        Projections at the same position move together (one read, one transaction). One
        far behind (just added, say) moves on in its own transaction after the others
        have folded what is new, so it never holds up their lag.
        """
        current = t.positions(self.conn, self.names)
        last = t.head(self.conn)
        groups: dict[int, list[Projection]] = {}
        for projection in self.projections:
            position = current.get(projection.name, 0)
            if position < last:
                groups.setdefault(position, []).append(projection)
        folded = 0
        for low in sorted(groups, reverse=True):  # the most up to date first
            folded += self._fold(groups[low], low, min(last, low + self.batch))
        return folded

    def _fold(self, projections: list[Projection], low: int, upto: int) -> int:
        topics = sorted(set().union(*(p.topics for p in projections)))
        records = to_records(read_page(self.conn, low, upto, topics))
        names = [p.name for p in projections]
        folded = 0
        with self.conn.transaction():
            locked = dict(
                self.conn.execute(
                    f"SELECT name, position FROM {t.TABLE} WHERE name = ANY(%s)"
                    " ORDER BY name FOR UPDATE",
                    (names,),
                ).fetchall()
            )
            for projection in projections:
                position = locked.get(projection.name, 0)
                if position >= upto:
                    continue  # e.g. a rebuild swapped in a newer position meanwhile
                todo = [
                    r for r in records if r.position > position and r.topic in projection.handlers
                ]
                if todo:
                    rows = LiveRows(self.conn, projection)
                    rows.prefetch(todo)
                    for record in todo:
                        projection.apply(record, rows)
                    rows.flush()
                    folded += len(todo)
                self.conn.execute(
                    f"UPDATE {t.TABLE} SET position = %s, updated_at = clock_timestamp()"
                    " WHERE name = %s",
                    (upto, projection.name),
                )
            self.conn.execute(f"NOTIFY {t.CHANNEL}")
        return max(folded, 1)

    def catch_up(self) -> int:
        """Fold everything committed so far; return the number of steps taken."""
        steps = 0
        while self.step():
            steps += 1
        return steps

    def run_forever(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set: LISTEN for commits, poll as a fallback."""
        listener: psycopg.Connection[Any] | None = None
        while not stop.is_set():
            try:
                if listener is None or listener.closed:
                    listener = psycopg.connect(self.dsn, autocommit=True)
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_TABLE)))
                if self.conn.closed:
                    self.conn = psycopg.connect(self.dsn, autocommit=True)
                if self.step():
                    continue
                for _ in listener.notifies(timeout=POLL_SECONDS, stop_after=1):
                    pass
            except psycopg.OperationalError as error:
                log.warning("projection worker lost its connection (%s); reconnecting", error)
                for conn in (listener, self.conn):
                    if conn is not None:
                        conn.close()
                stop.wait(RETRY_SECONDS / 5)
            except Exception:
                log.exception("projection worker failed; nothing of this step was kept")
                stop.wait(RETRY_SECONDS)
        if listener is not None:
            listener.close()


def wait_until(dsn: str, position: int, names: Iterable[str], timeout: float = 30.0) -> bool:
    """Convenience for tools and tests: wait on a fresh connection."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        return t.wait_for(conn, list(names), position, max(0.0, deadline - time.monotonic()))

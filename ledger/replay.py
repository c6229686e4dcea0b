"""The batch path: rebuild projections from position 0 while the old tables keep serving.

One transaction does it all, so an interrupted rebuild leaves nothing behind and the
old tables serve throughout:

1. fresh, index-less copies of the projection's tables in ``projections_rebuild``;
2. the notification log in large keyset pages (binary, only the topics the
   projections fold), decoded once, folded in memory by the same handlers the live
   runner uses; the state is dictionaries of *live* rows (items, open loans, open
   transits...), while rows that only grow with history (closed custody intervals)
   are streamed out with COPY as they are produced — memory is bounded by live
   state, never by the length of history;
3. indexes built after loading; then the tracking rows are locked (the live worker
   waits), the tail that arrived meanwhile is folded, the state tables are COPYed;
4. the swap: the old tables are dropped and the new ones moved into ``public`` with
   their grants, and the tracking positions set — all at one commit.

The live worker then carries on from the rebuilt position.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ledger.eventlog import PAGE, Record, pages, to_records
from ledger.projections import select
from ledger.projections import tracking as t
from ledger.projections.base import MemoryRows, Projection, Table

STAGING = "projections_rebuild"
#: Log rows buffered before a COPY: bounds memory, amortises the COPY round trip.
LOG_FLUSH = 20_000


class RebuildBusy(RuntimeError):
    """Another rebuild of the same projection is running."""


@dataclass
class RebuildReport:
    names: list[str]
    position: int = 0
    events_read: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent in each step

    @property
    def events_per_second(self) -> float:
        return self.position / self.seconds if self.seconds else 0.0


class _Sink:
    """Emitted log rows, COPYed into the staging tables in bounded batches."""

    def __init__(self, conn: psycopg.Connection[Any], tables: dict[str, Table]) -> None:
        self.conn = conn
        self.tables = tables
        self.buffers: dict[str, list[tuple[Any, ...]]] = {name: [] for name in tables}
        self.counts: dict[str, int] = dict.fromkeys(tables, 0)
        self.types = {name: _column_types(conn, STAGING, t) for name, t in tables.items()}

    def __call__(self, table: str, row: tuple[Any, ...]) -> None:
        buffer = self.buffers[table]
        buffer.append(row)
        if len(buffer) >= LOG_FLUSH:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        for name in [table] if table else list(self.buffers):
            buffer = self.buffers[name]
            if buffer:
                copy_rows(self.conn, STAGING, self.tables[name], buffer, self.types[name])
                self.counts[name] += len(buffer)
                buffer.clear()


def copy_rows(
    conn: psycopg.Connection[Any],
    schema: str,
    table: Table,
    rows: Any,
    types: list[str] | None = None,
) -> int:
    """COPY rows into ``schema.table`` in binary (no text formatting of UUIDs and times).

    ``types``: the columns' types when the caller already read them (a sink flushing the
    same table again and again)."""
    types = types or _column_types(conn, schema, table)
    query = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(schema),
        sql.Identifier(table.name),
        sql.SQL(", ").join(map(sql.Identifier, table.columns)),
    )
    n = 0
    with conn.cursor().copy(query) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)
            n += 1
    return n


def _column_types(conn: psycopg.Connection[Any], schema: str, table: Table) -> list[str]:
    found = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (f"{schema}.{table.name}",),
        ).fetchall()
    )
    missing = [c for c in table.columns if c not in found]
    if missing:
        raise RuntimeError(f"{table.name} has no column(s) {', '.join(missing)}: migrate first")
    return [found[c] for c in table.columns]


def rebuild(
    dsn: str,
    names: list[str] | tuple[str, ...] | None = None,
    *,
    page: int = PAGE,
    progress: Callable[[int, int], None] | None = None,
    prefetch: bool = True,
    before_swap: Callable[[], None] | None = None,
) -> RebuildReport:
    """Rebuild the named projections (all when none) and swap them in atomically.

    ``progress(position, head)`` is called after each page. ``before_swap`` is a hook
    for tests (an interruption there must leave the old tables serving).
    """
    projections = select(names)
    # The fold allocates millions of short-lived tuples and no reference cycles: the
    # cyclic collector would rescan the whole live state again and again (half the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _rebuild(dsn, projections, page, progress, prefetch, before_swap)
    finally:
        if collecting:
            gc.enable()


def _rebuild(
    dsn: str,
    projections: list[Projection],
    page: int,
    progress: Callable[[int, int], None] | None,
    prefetch: bool,
    before_swap: Callable[[], None] | None,
) -> RebuildReport:
    report = RebuildReport([p.name for p in projections])
    started = time.perf_counter()
    topics = sorted(set().union(*(p.topics for p in projections)))
    tables = [table for p in projections for table in p.tables]
    with (
        psycopg.connect(dsn, autocommit=True) as reader,
        psycopg.connect(dsn) as writer,
    ):
        t.ensure(reader, report.names)
        writer.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        _lock_rebuilds(writer, report.names)
        _create_staging(writer, tables)
        sink = _Sink(writer, {table.name: table for table in tables if table.log})
        state = MemoryRows(tables, sink)
        dispatch = _dispatch(projections)

        def fold(after: int, upto: int) -> int:
            position = after
            for covered, rows in pages(reader, after, upto, topics, page, prefetch=prefetch):
                _fold(dispatch, to_records(rows), state)
                report.events_read += len(rows)
                position = covered
                if progress is not None:
                    progress(position, upto)
            return position

        clock = _Clock(report.phases)
        # Bulk: everything up to the head, then what arrived meanwhile, until caught up.
        position = 0
        while (last := t.head(reader)) > position:
            position = fold(position, last)
        sink.flush()
        clock("fold")
        for table in tables:
            if table.log:
                _build_indexes(writer, table)
        clock("index history")
        # The tail: the live worker now waits on its tracking rows until we commit.
        writer.execute(
            f"SELECT name FROM {t.TABLE} WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
            (report.names,),
        )
        last = t.head(reader)
        if last > position:
            position = fold(position, last)
        sink.flush()
        clock("tail")
        for table in tables:
            if not table.log:
                report.rows_written[table.name] = copy_rows(
                    writer, STAGING, table, state.rows(table.name)
                )
                _build_indexes(writer, table)
            else:
                report.rows_written[table.name] = sink.counts[table.name]
        clock("write state")
        if before_swap is not None:
            before_swap()
        _swap(writer, tables)
        writer.execute(
            f"UPDATE {t.TABLE} SET position = %s, updated_at = clock_timestamp(),"
            " rebuilt_at = clock_timestamp() WHERE name = ANY(%s)",
            (position, report.names),
        )
        writer.execute(f"NOTIFY {t.CHANNEL}")
        writer.commit()
        clock("swap")
    report.position = position
    report.seconds = time.perf_counter() - started
    return report


class _Clock:
    """Adds the time since the previous call to ``phases[name]``."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


def _dispatch(projections: list[Projection]) -> dict[str, tuple[Any, ...]]:
    """Per topic, the handlers of every projection that folds it, in registry order."""
    table: dict[str, list[Any]] = {}
    for projection in projections:
        for topic, handler in projection.handlers.items():
            table.setdefault(topic, []).append(handler)
    return {topic: tuple(handlers) for topic, handlers in table.items()}


def _fold(dispatch: dict[str, tuple[Any, ...]], records: list[Record], state: MemoryRows) -> None:
    """Each record through each handler, in log order (one projection's handlers never
    read another's rows, so the interleaving changes nothing)."""
    empty: tuple[Any, ...] = ()
    for record in records:
        for handler in dispatch.get(record.topic, empty):
            handler(record, state)


def _lock_rebuilds(conn: psycopg.Connection[Any], names: list[str]) -> None:
    for name in sorted(names):
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtext(%s))", (f"tongjie-rebuild:{name}",)
        ).fetchone()
        if not row or not row[0]:
            raise RebuildBusy(f"a rebuild of {name} is already running")


def _create_staging(conn: psycopg.Connection[Any], tables: list[Table]) -> None:
    """Empty copies of the live tables (columns, defaults, checks; indexes come later)."""
    for table in tables:
        name = sql.Identifier(table.name)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(sql.Identifier(STAGING), name))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.{} (LIKE public.{} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                " INCLUDING STORAGE INCLUDING COMMENTS)"
            ).format(sql.Identifier(STAGING), name, name)
        )


def _build_indexes(conn: psycopg.Connection[Any], table: Table) -> None:
    """The live table's indexes and key constraints, recreated on the staging copy."""
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid), c.conname, c.contype"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid"
        " WHERE x.indrelid = %s::regclass ORDER BY i.relname",
        (f"public.{table.name}",),
    ).fetchall()
    target = f"{STAGING}.{table.name}"
    for index_name, definition, constraint, kind in rows:
        staged = re.sub(
            rf" ON (ONLY )?(public\.)?{re.escape(table.name)} ",
            f" ON {target} ",
            definition,
            count=1,
        )
        conn.execute(staged)
        if constraint and kind in ("p", "u"):
            what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} " + what + " USING INDEX {}").format(
                    sql.Identifier(STAGING),
                    sql.Identifier(table.name),
                    sql.Identifier(constraint),
                    sql.Identifier(index_name),
                )
            )
    conn.execute(
        sql.SQL("ANALYZE {}.{}").format(sql.Identifier(STAGING), sql.Identifier(table.name))
    )


def _swap(conn: psycopg.Connection[Any], tables: list[Table]) -> None:
    """Replace the live tables by the staged ones, keeping their grants."""
    for table in tables:
        conn.execute(
            sql.SQL("LOCK TABLE public.{} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(table.name)
            )
        )
    for table in tables:
        name = sql.Identifier(table.name)
        grants = conn.execute(
            "SELECT grantee, string_agg(privilege_type, ', ')"
            " FROM information_schema.role_table_grants"
            " WHERE table_schema = 'public' AND table_name = %s"
            " AND grantee <> (SELECT tableowner FROM pg_tables"
            "   WHERE schemaname = 'public' AND tablename = %s)"
            " GROUP BY grantee",
            (table.name, table.name),
        ).fetchall()
        conn.execute(sql.SQL("DROP TABLE public.{}").format(name))
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(sql.Identifier(STAGING), name)
        )
        for grantee, privileges in grants:
            grantee_sql = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            conn.execute(
                sql.SQL("GRANT " + privileges + " ON public.{} TO {}").format(name, grantee_sql)
            )

"""What a projection is: its tables, and pure handlers that fold records into rows.

A handler never touches the database. It reads and writes rows through ``Rows``:
``get``/``put``/``delete`` by primary key on the projection's state tables, and
``emit`` to append to a log table (rows that only grow with history, never read back).
The live runner backs ``Rows`` with the few rows a batch touches, loaded from and
written back to the database in the transaction that advances the tracking
position; the batch rebuild backs it with dictionaries of the whole live state and
streams emitted rows out with COPY. Both call the same handlers, so they give the
same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ledger.eventlog import Record

Key = Any  # a scalar for one-column primary keys, else a tuple in key-column order


@dataclass(frozen=True)
class Table:
    """One table a projection owns. ``row`` is the NamedTuple of its columns, in order."""

    name: str
    row: type[NamedTuple]
    key: tuple[str, ...] = ()  # primary key columns; empty for a log table
    log: bool = False  # append-only: rows are emitted, never read back by handlers

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.row._fields)

    def key_of(self, row: tuple[Any, ...]) -> Key:
        indexes = self._key_indexes
        if len(indexes) == 1:
            return row[indexes[0]]
        return tuple(row[i] for i in indexes)

    @property
    def _key_indexes(self) -> tuple[int, ...]:
        return tuple(self.columns.index(k) for k in self.key)


class Rows(Protocol):
    def get(self, table: str, key: Key) -> Any: ...
    def put(self, table: str, key: Key, row: tuple[Any, ...]) -> None: ...
    def delete(self, table: str, key: Key) -> None: ...
    def emit(self, table: str, row: tuple[Any, ...]) -> None: ...


Handler = Callable[[Record, Rows], None]


@dataclass(frozen=True)
class Projection:
    """A read model: tables, a handler per event it folds, and what rows each touches.

    ``touches(record)`` names the (table, key) pairs the handler will read, so the
    live runner can load a batch's rows in one query per table; a key it misses is
    loaded on demand, so it is an optimisation, never a correctness condition.
    """

    name: str
    tables: tuple[Table, ...]
    handlers: Mapping[str, Handler]
    touches: Callable[[Record], Iterable[tuple[str, Key]]] = lambda record: ()
    description: str = ""
    table_map: dict[str, Table] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "table_map", {t.name: t for t in self.tables})

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.handlers)

    def apply(self, record: Record, rows: Rows) -> None:
        handler = self.handlers.get(record.topic)
        if handler is not None:
            handler(record, rows)


class MemoryRows:
    """``Rows`` over dictionaries: the whole live state of a rebuild, in memory.

    Emitted log rows go straight to ``sink`` (a COPY stream), so memory holds only
    state that is live now, never history.
    """

    def __init__(self, tables: Iterable[Table], sink: Callable[[str, tuple[Any, ...]], None]):
        self.state: dict[str, dict[Key, tuple[Any, ...]]] = {
            t.name: {} for t in tables if not t.log
        }
        self.sink = sink

    def get(self, table: str, key: Key) -> Any:
        return self.state[table].get(key)

    def put(self, table: str, key: Key, row: tuple[Any, ...]) -> None:
        self.state[table][key] = row

    def delete(self, table: str, key: Key) -> None:
        self.state[table].pop(key, None)

    def emit(self, table: str, row: tuple[Any, ...]) -> None:
        self.sink(table, row)

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        return iter(self.state[table].values())

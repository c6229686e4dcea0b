"""Committed aggregate states kept between batches, so a busy item costs a probe, not a replay."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from eventsourcing.domain import Aggregate


class AggregateCache:
    """Newest committed state per aggregate, least recently used evicted first.

    Callers get their own copies: a cached state is only ever replaced, never mutated.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._states: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._lock = threading.Lock()

    def copies(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate | None]:
        with self._lock:
            return {i: clone(a) if (a := self._states.get(i)) is not None else None for i in ids}

    def peek(self, ids: Iterable[UUID]) -> dict[UUID, Aggregate]:
        """Cached states, read-only."""
        with self._lock:
            return {i: self._states[i] for i in ids if i in self._states}

    def remember(self, aggregates: Iterable[Aggregate | None], *, owned: bool = False) -> None:
        """Keep committed states, the newest version of each.

        ``owned``: the caller hands the objects over (a finished batch), so no copy is needed.
        """
        with self._lock:
            for aggregate in aggregates:
                if aggregate is None or aggregate.pending_events:
                    continue
                cached = self._states.get(aggregate.id)
                if cached is None or cached.version < aggregate.version:
                    self._states[aggregate.id] = aggregate if owned else clone(aggregate)
                self._states.move_to_end(aggregate.id)
            while len(self._states) > self.size:
                self._states.popitem(last=False)


def clone(aggregate: Aggregate) -> Aggregate:
    """A copy that shares immutable values (enums, datetimes, frozen dataclasses).

    Aggregate state here is one level deep: the only containers are dicts and lists
    of immutable values, so copying those is as safe as a deepcopy and far cheaper.
    """
    twin = object.__new__(type(aggregate))
    twin.__dict__.update(
        {
            name: type(value)(value) if isinstance(value, dict | list) else value
            for name, value in vars(aggregate).items()
        }
    )
    return twin

"""Read models folded from the event store: one module per projection.

Each module owns its tables (created by a migration), its pure handlers and its
queries, and exposes ``PROJECTION``. ``REGISTRY`` is the one place a projection is
registered: the live worker, ``tongjie rebuild`` and the health check all read it.
"""

from __future__ import annotations

from ledger.projections import (
    circulation_report,
    current_loans,
    custody,
    item_locations,
    library_balances,
    transits,
)
from ledger.projections.base import Projection

#: Every projection, by name, in the order they are processed.
REGISTRY: dict[str, Projection] = {
    p.name: p
    for p in (
        item_locations.PROJECTION,
        current_loans.PROJECTION,
        transits.PROJECTION,
        library_balances.PROJECTION,
        custody.PROJECTION,
        circulation_report.PROJECTION,
    )
}


class UnknownProjection(ValueError):
    """A projection name that is not registered; the message lists the valid ones."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        valid = ", ".join(REGISTRY)
        super().__init__(f"unknown projection {', '.join(names)}: valid names are {valid}")


def select(names: list[str] | tuple[str, ...] | None) -> list[Projection]:
    """The projections with these names (all when none), or UnknownProjection."""
    if not names:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UnknownProjection(unknown)
    return [REGISTRY[n] for n in dict.fromkeys(names)]


__all__ = ["REGISTRY", "Projection", "UnknownProjection", "select"]

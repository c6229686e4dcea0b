"""item_custody: which library held each item when, for "what did X hold at instant T".

An item is held on a library's shelf (``shelf``: on the shelf or waiting there to be
shipped) or on loan from its desk (``loan``); in transit, lost or withdrawn it is held
by no one. Each change closes the item's current interval (emitted to the append-only
``item_custody``, streamed out during a rebuild) and opens the next one
(``item_custody_open``, one row per item: live state). Times are ``occurred_at``,
but never earlier than the item's previous event (``seen_at`` keeps the latest so far):
a desk that syncs late cannot make an interval end before it began, and holdings as of
an instant agree with ``history.as_of`` of each item at that instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table
from ledger.projections.paging import dict_rows

NAME = "item_custody"
OPEN = "item_custody_open"
SHELF, LOAN = "shelf", "loan"


class IntervalRow(NamedTuple):
    item_id: UUID
    owner: str
    holder: str
    held_as: str
    valid_from: datetime
    valid_to: datetime
    from_version: int
    to_version: int


class OpenRow(NamedTuple):
    item_id: UUID
    owner: str
    holder: str | None
    held_as: str | None
    valid_from: datetime
    from_version: int
    seen_at: datetime  # the latest occurred_at along the item's stream so far


_new = tuple.__new__  # positional rows: the rebuild's hot path


def _hold(r: Record, rows: Rows, holder: str | None, held_as: str | None) -> None:
    o: OpenRow | None = rows.get(OPEN, r.originator_id)
    if o is None:
        return
    at = r.data["occurred_at"]
    if at < o[6]:
        at = o[6]  # never before the item's previous event
    if o[2] == holder and o[3] == held_as:
        if at != o[6]:
            rows.put(OPEN, r.originator_id, _new(OpenRow, (*o[:6], at)))
        return
    if o[2] is not None:
        rows.emit(NAME, _new(IntervalRow, (*o[:5], at, o[5], r.version)))
    rows.put(OPEN, r.originator_id, _new(OpenRow, (o[0], o[1], holder, held_as, at, r.version, at)))


def _registered(r: Record, rows: Rows) -> None:
    owner, at = r.data["owner"], r.data["occurred_at"]
    rows.put(
        OPEN, r.originator_id, OpenRow(r.originator_id, owner, owner, SHELF, at, r.version, at)
    )


def _on_loan(r: Record, rows: Rows) -> None:
    _hold(r, rows, r.data["library"], LOAN)


def _on_shelf(r: Record, rows: Rows) -> None:
    """Returned, received, received unannounced, found: on the shelf where it happened."""
    _hold(r, rows, r.data["library"], SHELF)


def _gone(r: Record, rows: Rows) -> None:
    """Dispatched, lost, withdrawn: held by no one."""
    _hold(r, rows, None, None)


def _cancelled(r: Record, rows: Rows) -> None:
    _hold(r, rows, r.data["holding"], SHELF)  # back with the sender (its custodian in transit)


def _unchanged(r: Record, rows: Rows) -> None:
    """Renewed, or corrected without moving: custody stays, the item's clock moves on."""
    o: OpenRow | None = rows.get(OPEN, r.originator_id)
    if o is not None:
        _hold(r, rows, o[2], o[3])


def _corrected(r: Record, rows: Rows) -> None:
    location = r.data["changes"].get("location")
    if location is not None:
        _hold(r, rows, location, SHELF)
    else:
        _unchanged(r, rows)


HANDLERS = {
    "Item.Registered": _registered,
    "Item.Borrowed": _on_loan,
    "Item.Renewed": _unchanged,
    "Item.Returned": _on_shelf,
    "Item.TransferDispatched": _gone,
    "Item.TransferReceived": _on_shelf,
    "Item.TransferCancelled": _cancelled,
    "Item.ReceivedUnannounced": _on_shelf,
    "Item.DeclaredLost": _gone,
    "Item.Found": _on_shelf,
    "Item.Withdrawn": _gone,
    "Item.Corrected": _corrected,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    return ((OPEN, r.originator_id),)


PROJECTION = Projection(
    NAME,
    (
        Table(NAME, IntervalRow, log=True),
        Table(OPEN, OpenRow, key=("item_id",)),
    ),
    HANDLERS,
    _touches,
    description="which library held each item when (for holdings as of an instant)",
)


# ----------------------------------------------------------------- queries


def holdings(
    conn: Any,
    library: str,
    at: datetime,
    *,
    after: tuple[str, UUID] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The items ``library`` held at instant ``at``: on its shelf or on loan from its desk."""
    params: dict[str, Any] = {"library": library, "at": at, "limit": limit + 1}
    page = ""
    if after is not None:
        page = "WHERE (h.owner, h.item_id) > (%(owner)s, %(item)s)"
        params.update(owner=after[0], item=after[1])
    return dict_rows(
        conn,
        "SELECT h.item_id, h.owner, i.barcode, i.title, h.held_as, h.valid_from AS held_since"
        " FROM ("
        f"  SELECT item_id, owner, held_as, valid_from FROM {NAME}"
        "   WHERE holder = %(library)s AND valid_from <= %(at)s AND valid_to > %(at)s"
        "  UNION ALL"
        f"  SELECT item_id, owner, held_as, valid_from FROM {OPEN}"
        "   WHERE holder = %(library)s AND valid_from <= %(at)s"
        f") h LEFT JOIN item_locations i ON i.item_id = h.item_id {page}"
        " ORDER BY h.owner, h.item_id LIMIT %(limit)s",
        params,
    )

"""transits: shipments dispatched and not yet received (nor cancelled, nor lost).

Age and "overdue" are computed when asked (against a number of days,
``LEDGER_TRANSIT_OVERDUE_DAYS``), so the rows change only when events say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table
from ledger.projections.paging import dict_rows

NAME = "transits"


class TransitRow(NamedTuple):
    item_id: UUID
    transfer_id: UUID
    owner: str
    from_library: str
    to_library: str
    dispatched_at: datetime
    position: int


def _dispatched(r: Record, rows: Rows) -> None:
    d = r.data
    rows.put(
        NAME,
        r.originator_id,
        TransitRow(
            r.originator_id,
            d["transfer_id"],
            d["owner"],
            d["from_library"],
            d["to_library"],
            d["occurred_at"],
            r.position,
        ),
    )


def _ended(r: Record, rows: Rows) -> None:
    """Received, cancelled, superseded by an unannounced arrival, or lost on the way."""
    rows.delete(NAME, r.originator_id)


HANDLERS = {
    "Item.TransferDispatched": _dispatched,
    "Item.TransferReceived": _ended,
    "Item.TransferCancelled": _ended,
    "Item.ReceivedUnannounced": _ended,
    "Item.DeclaredLost": _ended,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    return ((NAME, r.originator_id),)


PROJECTION = Projection(
    NAME,
    (Table(NAME, TransitRow, key=("item_id",)),),
    HANDLERS,
    _touches,
    description="shipments dispatched and not yet received, with their age",
)


# ----------------------------------------------------------------- queries


def query(
    conn: Any,
    *,
    at: datetime,
    overdue_days: int,
    from_library: str | None = None,
    to_library: str | None = None,
    overdue: bool = False,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Open shipments, oldest first, with their age in days at ``at`` and whether they are
    over ``overdue_days`` old."""
    where = ["true"]
    params: dict[str, Any] = {"at": at, "days": overdue_days, "limit": limit + 1}
    if from_library is not None:
        where.append("t.from_library = %(from)s")
        params["from"] = from_library
    if to_library is not None:
        where.append("t.to_library = %(to)s")
        params["to"] = to_library
    late = "t.dispatched_at < %(at)s - make_interval(days => %(days)s)"
    if overdue:
        where.append(late)
    if after is not None:
        where.append("(t.dispatched_at, t.item_id) > (%(since)s, %(item)s)")
        params.update(since=after[0], item=after[1])
    return dict_rows(
        conn,
        "SELECT t.transfer_id, t.item_id, t.owner, i.barcode, i.title, t.from_library,"
        " t.to_library, t.dispatched_at,"
        " round((extract(epoch FROM %(at)s - t.dispatched_at) / 86400)::numeric, 2)::float"
        f" AS age_days, {late} AS overdue"
        f" FROM {NAME} t LEFT JOIN item_locations i ON i.item_id = t.item_id"
        f" WHERE {' AND '.join(where)} ORDER BY t.dispatched_at, t.item_id LIMIT %(limit)s",
        params,
    )

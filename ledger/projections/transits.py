"""transits: shipments dispatched and not yet received (nor cancelled, nor lost).

Age and "overdue" are computed when asked (against a number of days,
``LEDGER_TRANSIT_OVERDUE_DAYS``), so the rows change only when events say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.projections.base import Projection, Rows, Table
from ledger.projections.records import Record

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

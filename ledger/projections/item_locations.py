"""item_locations: every item's current state, where it is, and since when.

The handlers mirror ``Item``'s events' ``apply`` (the property test checks each row
against the item replayed from its stream): status, location (where it physically
is or last was), custodian (the library responsible for it now), the open loan or
transfer, and ``since`` (when the current status began, as occurred at the desk).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table
from ledger.projections.paging import dict_rows

NAME = "item_locations"

ON_SHELF, ON_LOAN, AWAITING, IN_TRANSIT, LOST, WITHDRAWN = (
    "on_shelf",
    "on_loan",
    "awaiting_transfer",
    "in_transit",
    "lost",
    "withdrawn",
)
STATUSES = (ON_SHELF, ON_LOAN, AWAITING, IN_TRANSIT, LOST, WITHDRAWN)


class ItemRow(NamedTuple):
    item_id: UUID
    owner: str
    barcode: str
    title: str | None
    status: str
    location: str
    custodian: str
    destination: str | None
    loan_id: UUID | None
    reader_id: UUID | None
    transfer_id: UUID | None
    transfer_to: str | None
    resumes: str | None
    since: datetime
    version: int
    position: int


TABLE = Table(NAME, ItemRow, key=("item_id",))


#: Column positions of ``ItemRow``: handlers copy the current row into a list, set the
#: columns their event changes by name, and build the tuple positionally — several times
#: cheaper than ``_replace`` on the rebuild's hot path, and every change still reads by name.
(
    TITLE,
    STATUS,
    LOCATION,
    CUSTODIAN,
    DESTINATION,
    LOAN_ID,
    READER_ID,
    TRANSFER_ID,
    TRANSFER_TO,
    RESUMES,
    SINCE,
) = range(3, 14)
_new = tuple.__new__


def _registered(r: Record, rows: Rows) -> None:
    d = r.data
    owner = d["owner"]
    row = (r.originator_id, owner, d["barcode"], d["title"], ON_SHELF, owner, owner)
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (*row, None, None, None, None, None, None, d["occurred_at"], r.version, r.position),
        ),
    )


def _current(r: Record, rows: Rows) -> list[Any] | None:
    """The item's row as a list to change, stamped with this event; None before its
    registration (an item event before it cannot be folded)."""
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return None
    row = list(o)
    row[14], row[15] = r.version, r.position
    return row


def _put(r: Record, rows: Rows, row: list[Any]) -> None:
    rows.put(NAME, r.originator_id, _new(ItemRow, row))


def _at(row: list[Any], r: Record, status: str, library: str) -> None:
    """The item's status began now, physically at ``library``, in its custody."""
    row[STATUS], row[LOCATION], row[CUSTODIAN] = status, library, library
    row[SINCE] = r.data["occurred_at"]


def _borrowed(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        d = r.data
        _at(row, r, ON_LOAN, d["library"])
        row[DESTINATION], row[LOAN_ID], row[READER_ID] = None, d["loan_id"], d["reader_id"]
        _put(r, rows, row)


def _renewed(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        _put(r, rows, row)


def _returned(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        d = r.data
        if d["disposition"] == "transfer_to_owner":
            _at(row, r, AWAITING, d["library"])
            row[DESTINATION] = d["owner"]
        else:
            _at(row, r, ON_SHELF, d["library"])
            row[DESTINATION] = None
        row[LOAN_ID] = row[READER_ID] = None
        _put(r, rows, row)


def _dispatched(r: Record, rows: Rows) -> None:
    """In transit; the sender stays responsible, and a cancellation resumes the status."""
    if (row := _current(r, rows)) is not None:
        d = r.data
        row[RESUMES] = row[STATUS]
        _at(row, r, IN_TRANSIT, row[LOCATION])
        row[CUSTODIAN], row[DESTINATION] = d["from_library"], None
        row[TRANSFER_ID], row[TRANSFER_TO] = d["transfer_id"], d["to_library"]
        _put(r, rows, row)


def _arrived(r: Record, rows: Rows) -> None:
    """Received, or received unannounced: on shelf where it arrived."""
    if (row := _current(r, rows)) is not None:
        _at(row, r, ON_SHELF, r.data["library"])
        row[DESTINATION] = None
        row[TRANSFER_ID] = row[TRANSFER_TO] = row[RESUMES] = None
        _put(r, rows, row)


def _cancelled(r: Record, rows: Rows) -> None:
    """Back with the sender (a dispatch leaves the location unchanged), as it was."""
    if (row := _current(r, rows)) is not None:
        status = row[RESUMES] or ON_SHELF
        _at(row, r, status, row[LOCATION])
        row[DESTINATION] = row[1] if status == AWAITING else None  # the owner
        row[TRANSFER_ID] = row[TRANSFER_TO] = row[RESUMES] = None
        _put(r, rows, row)


def _lost(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        _at(row, r, LOST, row[LOCATION])
        row[DESTINATION] = row[LOAN_ID] = row[READER_ID] = None
        row[TRANSFER_ID] = row[TRANSFER_TO] = row[RESUMES] = None
        _put(r, rows, row)


def _found(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        _at(row, r, ON_SHELF, r.data["library"])
        _put(r, rows, row)


def _withdrawn(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        _at(row, r, WITHDRAWN, row[LOCATION])
        _put(r, rows, row)


def _corrected(r: Record, rows: Rows) -> None:
    if (row := _current(r, rows)) is not None:
        changes = r.data["changes"]
        if "title" in changes:
            row[TITLE] = changes["title"]
        if "location" in changes:  # only shelved items can be relocated: custody follows
            row[LOCATION] = row[CUSTODIAN] = changes["location"]
        _put(r, rows, row)


HANDLERS = {
    "Item.Registered": _registered,
    "Item.Borrowed": _borrowed,
    "Item.Renewed": _renewed,
    "Item.Returned": _returned,
    "Item.TransferDispatched": _dispatched,
    "Item.TransferReceived": _arrived,
    "Item.TransferCancelled": _cancelled,
    "Item.ReceivedUnannounced": _arrived,
    "Item.DeclaredLost": _lost,
    "Item.Found": _found,
    "Item.Withdrawn": _withdrawn,
    "Item.Corrected": _corrected,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    return ((NAME, r.originator_id),)


PROJECTION = Projection(
    NAME,
    (TABLE,),
    HANDLERS,
    _touches,
    description="every item's state, location, custodian, open loan or transfer",
)


# ----------------------------------------------------------------- queries


def query(
    conn: Any,
    *,
    library: str | None = None,
    owner: str | None = None,
    status: str | None = None,
    after: tuple[str, str] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Items by custodian, owner and/or status, ordered by (owner, barcode); ``limit + 1``
    rows so the caller can tell whether there is another page."""
    where, params = ["true"], []
    for column, value in (("custodian", library), ("owner", owner), ("status", status)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if after is not None:
        where.append("(owner, barcode) > (%s, %s)")
        params += list(after)
    return dict_rows(
        conn,
        f"SELECT * FROM {NAME} WHERE {' AND '.join(where)} ORDER BY owner, barcode LIMIT %s",
        [*params, limit + 1],
    )

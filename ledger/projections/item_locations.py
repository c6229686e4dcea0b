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

from ledger.projections.base import Projection, Rows, Table
from ledger.projections.records import Record

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


def _registered(r: Record, rows: Rows) -> None:
    d = r.data
    rows.put(
        NAME,
        r.originator_id,
        ItemRow(
            r.originator_id,
            d["owner"],
            d["barcode"],
            d["title"],
            ON_SHELF,
            d["owner"],
            d["owner"],
            None,
            None,
            None,
            None,
            None,
            None,
            d["occurred_at"],
            r.version,
            r.position,
        ),
    )


def _change(r: Record, rows: Rows, **changes: Any) -> None:
    row: ItemRow | None = rows.get(NAME, r.originator_id)
    if row is None:  # an item event before its registration cannot be folded
        return
    rows.put(NAME, r.originator_id, row._replace(version=r.version, position=r.position, **changes))


def _borrowed(r: Record, rows: Rows) -> None:
    d = r.data
    _change(
        r,
        rows,
        status=ON_LOAN,
        location=d["library"],
        custodian=d["library"],
        loan_id=d["loan_id"],
        reader_id=d["reader_id"],
        destination=None,
        since=d["occurred_at"],
    )


def _renewed(r: Record, rows: Rows) -> None:
    _change(r, rows)


def _returned(r: Record, rows: Rows) -> None:
    d = r.data
    awaiting = d["disposition"] == "transfer_to_owner"
    _change(
        r,
        rows,
        status=AWAITING if awaiting else ON_SHELF,
        destination=d["owner"] if awaiting else None,
        location=d["library"],
        custodian=d["library"],
        loan_id=None,
        reader_id=None,
        since=d["occurred_at"],
    )


def _dispatched(r: Record, rows: Rows) -> None:
    row: ItemRow | None = rows.get(NAME, r.originator_id)
    if row is None:
        return
    d = r.data
    _change(
        r,
        rows,
        status=IN_TRANSIT,
        resumes=row.status,
        transfer_id=d["transfer_id"],
        transfer_to=d["to_library"],
        custodian=d["from_library"],
        destination=None,
        since=d["occurred_at"],
    )


def _arrived(r: Record, rows: Rows) -> None:
    """Received, or received unannounced: on shelf where it arrived."""
    d = r.data
    _change(
        r,
        rows,
        status=ON_SHELF,
        location=d["library"],
        custodian=d["library"],
        destination=None,
        transfer_id=None,
        transfer_to=None,
        resumes=None,
        since=d["occurred_at"],
    )


def _cancelled(r: Record, rows: Rows) -> None:
    row: ItemRow | None = rows.get(NAME, r.originator_id)
    if row is None:
        return
    status = row.resumes or ON_SHELF
    _change(
        r,
        rows,
        status=status,
        custodian=row.location,  # the sender: dispatch leaves the location unchanged
        destination=row.owner if status == AWAITING else None,
        transfer_id=None,
        transfer_to=None,
        resumes=None,
        since=r.data["occurred_at"],
    )


def _lost(r: Record, rows: Rows) -> None:
    row: ItemRow | None = rows.get(NAME, r.originator_id)
    if row is None:
        return
    _change(
        r,
        rows,
        status=LOST,
        custodian=row.location,
        loan_id=None,
        reader_id=None,
        transfer_id=None,
        transfer_to=None,
        resumes=None,
        destination=None,
        since=r.data["occurred_at"],
    )


def _found(r: Record, rows: Rows) -> None:
    d = r.data
    _change(
        r,
        rows,
        status=ON_SHELF,
        location=d["library"],
        custodian=d["library"],
        since=d["occurred_at"],
    )


def _withdrawn(r: Record, rows: Rows) -> None:
    _change(r, rows, status=WITHDRAWN, since=r.data["occurred_at"])


def _corrected(r: Record, rows: Rows) -> None:
    changes = r.data["changes"]
    fields: dict[str, Any] = {}
    if "title" in changes:
        fields["title"] = changes["title"]
    if "location" in changes:  # only shelved items can be relocated: custody follows
        fields["location"] = fields["custodian"] = changes["location"]
    _change(r, rows, **fields)


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
    return _dicts(
        conn,
        f"SELECT * FROM {NAME} WHERE {' AND '.join(where)} ORDER BY owner, barcode LIMIT %s",
        [*params, limit + 1],
    )


def _dicts(conn: Any, query: str, params: Any) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()

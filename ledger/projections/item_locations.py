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


#: Rows are built positionally with ``tuple.__new__``: several times cheaper than
#: ``_replace`` on the rebuild's hot path. Column order: see ``ItemRow``.
_new = tuple.__new__


def _registered(r: Record, rows: Rows) -> None:
    d = r.data
    owner = d["owner"]
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                r.originator_id,
                owner,
                d["barcode"],
                d["title"],
                ON_SHELF,
                owner,
                owner,
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
        ),
    )


def _change(r: Record, rows: Rows, **changes: Any) -> None:
    row: ItemRow | None = rows.get(NAME, r.originator_id)
    if row is None:  # an item event before its registration cannot be folded
        return
    rows.put(NAME, r.originator_id, row._replace(version=r.version, position=r.position, **changes))


def _borrowed(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    d = r.data
    at = d["library"]
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                ON_LOAN,
                at,
                at,
                None,
                d["loan_id"],
                d["reader_id"],
                *o[10:13],
                d["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _renewed(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is not None:
        rows.put(NAME, r.originator_id, _new(ItemRow, (*o[:14], r.version, r.position)))


def _returned(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    d = r.data
    at = d["library"]
    if d["disposition"] == "transfer_to_owner":
        status, destination = AWAITING, d["owner"]
    else:
        status, destination = ON_SHELF, None
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                status,
                at,
                at,
                destination,
                None,
                None,
                *o[10:13],
                d["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _dispatched(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    d = r.data
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                IN_TRANSIT,
                o[5],
                d["from_library"],
                None,
                o[8],
                o[9],
                d["transfer_id"],
                d["to_library"],
                o[4],
                d["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _arrived(r: Record, rows: Rows) -> None:
    """Received, or received unannounced: on shelf where it arrived."""
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    d = r.data
    at = d["library"]
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                ON_SHELF,
                at,
                at,
                None,
                o[8],
                o[9],
                None,
                None,
                None,
                d["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _cancelled(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    status = o.resumes or ON_SHELF
    destination = o.owner if status == AWAITING else None
    # Back with the sender: a dispatch leaves the location unchanged.
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                status,
                o[5],
                o[5],
                destination,
                o[8],
                o[9],
                None,
                None,
                None,
                r.data["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _lost(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (
                *o[:4],
                LOST,
                o[5],
                o[5],
                None,
                None,
                None,
                None,
                None,
                None,
                r.data["occurred_at"],
                r.version,
                r.position,
            ),
        ),
    )


def _found(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    d = r.data
    at = d["library"]
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow, (*o[:4], ON_SHELF, at, at, *o[7:13], d["occurred_at"], r.version, r.position)
        ),
    )


def _withdrawn(r: Record, rows: Rows) -> None:
    o: ItemRow | None = rows.get(NAME, r.originator_id)
    if o is None:
        return
    rows.put(
        NAME,
        r.originator_id,
        _new(
            ItemRow,
            (*o[:4], WITHDRAWN, o[5], o[5], *o[7:13], r.data["occurred_at"], r.version, r.position),
        ),
    )


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

"""library_balances: who holds whose books — the sheet a consortium settles on.

Each item sits in one bucket: ``home`` (in its owner's custody: on the shelf, on loan
from the owner's desk, or waiting there), ``elsewhere`` (in another library's custody:
floating, on loan from another desk, or waiting to be shipped home), ``transit``,
``lost`` or ``withdrawn``. Custody follows ``Item.custodian``: the lending desk for a
loan, the sender for a shipment, otherwise where the item is. Per library the sheet
counts its own items by bucket and the other libraries' items in its custody; the
pairs table says from whom.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table
from ledger.projections.paging import dict_rows

NAME = "library_balances"
PAIRS = "library_balance_pairs"
ITEMS = "library_balance_items"

HOME, ELSEWHERE, TRANSIT, LOST, WITHDRAWN = "home", "elsewhere", "transit", "lost", "withdrawn"


class BalanceRow(NamedTuple):
    library: str
    own_at_home: int
    own_elsewhere: int
    own_in_transit: int
    own_lost: int
    held_for_others: int


class PairRow(NamedTuple):
    holder: str
    owner: str
    items: int


class BucketRow(NamedTuple):
    item_id: UUID
    owner: str
    holder: str
    bucket: str


#: Which counter of the owner's row each bucket adds to (withdrawn: none).
_OWNER_COLUMN = {
    HOME: "own_at_home",
    ELSEWHERE: "own_elsewhere",
    TRANSIT: "own_in_transit",
    LOST: "own_lost",
}


_new = tuple.__new__
_INDEX = {name: i for i, name in enumerate(BalanceRow._fields)}


def _add(rows: Rows, library: str, column: str, n: int) -> None:
    row: BalanceRow | None = rows.get(NAME, library)
    if row is None:
        row = BalanceRow(library, 0, 0, 0, 0, 0)
    i = _INDEX[column]
    rows.put(NAME, library, _new(BalanceRow, (*row[:i], row[i] + n, *row[i + 1 :])))


def _count(rows: Rows, item: BucketRow, n: int) -> None:
    column = _OWNER_COLUMN.get(item.bucket)
    if column is None:
        return
    _add(rows, item.owner, column, n)
    if item.bucket == ELSEWHERE:
        _add(rows, item.holder, "held_for_others", n)
        pair: PairRow | None = rows.get(PAIRS, (item.holder, item.owner))
        count = (pair.items if pair is not None else 0) + n
        if count:
            rows.put(PAIRS, (item.holder, item.owner), _new(PairRow, (item[2], item[1], count)))
        else:
            rows.delete(PAIRS, (item.holder, item.owner))


def _move(r: Record, rows: Rows, holder: str | None = None, bucket: str | None = None) -> None:
    """Move the item to a new holder and/or bucket; held items land home or elsewhere."""
    old: BucketRow | None = rows.get(ITEMS, r.originator_id)
    if old is None:
        return
    holder = holder or old.holder
    if bucket is None:
        bucket = HOME if holder == old.owner else ELSEWHERE
    new = _new(BucketRow, (old[0], old[1], holder, bucket))
    if new != old:
        _count(rows, old, -1)
        _count(rows, new, +1)
        rows.put(ITEMS, r.originator_id, new)


def _registered(r: Record, rows: Rows) -> None:
    owner = r.data["owner"]
    item = BucketRow(r.originator_id, owner, owner, HOME)
    rows.put(ITEMS, r.originator_id, item)
    _count(rows, item, +1)


def _at_desk(r: Record, rows: Rows) -> None:
    """Borrowed, returned, received, received unannounced, found: held where it happened."""
    _move(r, rows, holder=r.data["library"])


def _dispatched(r: Record, rows: Rows) -> None:
    _move(r, rows, holder=r.data["from_library"], bucket=TRANSIT)


def _cancelled(r: Record, rows: Rows) -> None:
    _move(r, rows)  # back in the sender's custody


def _lost(r: Record, rows: Rows) -> None:
    _move(r, rows, bucket=LOST)


def _withdrawn(r: Record, rows: Rows) -> None:
    _move(r, rows, bucket=WITHDRAWN)


def _corrected(r: Record, rows: Rows) -> None:
    location = r.data["changes"].get("location")
    if location is not None:
        _move(r, rows, holder=location)


def _library_joined(r: Record, rows: Rows) -> None:
    if rows.get(NAME, r.data["code"]) is None:
        rows.put(NAME, r.data["code"], BalanceRow(r.data["code"], 0, 0, 0, 0, 0))


HANDLERS = {
    "Item.Registered": _registered,
    "Item.Borrowed": _at_desk,
    "Item.Returned": _at_desk,
    "Item.TransferDispatched": _dispatched,
    "Item.TransferReceived": _at_desk,
    "Item.TransferCancelled": _cancelled,
    "Item.ReceivedUnannounced": _at_desk,
    "Item.DeclaredLost": _lost,
    "Item.Found": _at_desk,
    "Item.Withdrawn": _withdrawn,
    "Item.Corrected": _corrected,
    "Library.Joined": _library_joined,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    """The item's bucket and the libraries the event names (the holder before the event
    is the event's ``holding``); anything else is loaded on demand."""
    d = r.data
    if r.topic == "Library.Joined":
        return ((NAME, d["code"]),)
    names = {d.get("owner"), d.get("holding"), d.get("library"), d.get("from_library")}
    names.discard(None)
    touched: list[tuple[str, Any]] = [(ITEMS, r.originator_id)]
    touched += [(NAME, name) for name in names]
    owner = d.get("owner")
    touched += [(PAIRS, (name, owner)) for name in names if name != owner]
    return touched


PROJECTION = Projection(
    NAME,
    (
        Table(NAME, BalanceRow, key=("library",)),
        Table(PAIRS, PairRow, key=("holder", "owner")),
        Table(ITEMS, BucketRow, key=("item_id",)),
    ),
    HANDLERS,
    _touches,
    description="per library: own items at home, elsewhere, in transit, lost; others' held",
)


# ----------------------------------------------------------------- queries


def query(conn: Any, library: str) -> dict[str, Any] | None:
    """The library's line of the sheet, with its counterparties on both sides."""
    rows = dict_rows(conn, f"SELECT * FROM {NAME} WHERE library = %s", [library])
    if not rows:
        return None
    balance = rows[0]
    balance["held_from"] = dict_rows(
        conn,
        f"SELECT owner AS library, items FROM {PAIRS} WHERE holder = %s ORDER BY owner",
        [library],
    )
    balance["held_by"] = dict_rows(
        conn,
        f"SELECT holder AS library, items FROM {PAIRS} WHERE owner = %s ORDER BY holder",
        [library],
    )
    balance["net"] = balance["held_for_others"] - balance["own_elsewhere"]
    return balance

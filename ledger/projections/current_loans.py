"""current_loans: open loans, by library, by reader, and overdue as of an instant.

Readers appear only as the random reader id of the events and the masked number of
their registration (cleared when the person is forgotten): never an identity number.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table
from ledger.projections.paging import dict_rows

NAME = "current_loans"
READERS = "loan_readers"


class LoanRow(NamedTuple):
    item_id: UUID
    loan_id: UUID
    reader_id: UUID
    owner: str
    library: str
    borrowed_at: datetime
    due_at: datetime
    renewals: int
    position: int


class ReaderRow(NamedTuple):
    reader_id: UUID
    masked_number: str | None
    home_library: str


def _borrowed(r: Record, rows: Rows) -> None:
    d = r.data
    rows.put(
        NAME,
        r.originator_id,
        LoanRow(
            r.originator_id,
            d["loan_id"],
            d["reader_id"],
            d["owner"],
            d["library"],
            d["occurred_at"],
            d["due_at"],
            0,
            r.position,
        ),
    )


def _renewed(r: Record, rows: Rows) -> None:
    loan: LoanRow | None = rows.get(NAME, r.originator_id)
    if loan is not None and loan.loan_id == r.data["loan_id"]:
        rows.put(
            NAME,
            r.originator_id,
            loan._replace(due_at=r.data["due_at"], renewals=r.data["renewal"], position=r.position),
        )


def _ended(r: Record, rows: Rows) -> None:
    """Returned, or declared lost (which ends an open loan)."""
    rows.delete(NAME, r.originator_id)


def _corrected(r: Record, rows: Rows) -> None:
    due_at = r.data["changes"].get("due_at")
    loan: LoanRow | None = rows.get(NAME, r.originator_id)
    if due_at is not None and loan is not None:
        rows.put(
            NAME,
            r.originator_id,
            loan._replace(due_at=datetime.fromisoformat(due_at), position=r.position),
        )


def _reader_registered(r: Record, rows: Rows) -> None:
    d = r.data
    rows.put(
        READERS, r.originator_id, ReaderRow(r.originator_id, d["masked_number"], d["home_library"])
    )


def _reader_forgotten(r: Record, rows: Rows) -> None:
    reader: ReaderRow | None = rows.get(READERS, r.originator_id)
    if reader is not None:
        rows.put(READERS, r.originator_id, reader._replace(masked_number=None))


HANDLERS = {
    "Item.Borrowed": _borrowed,
    "Item.Renewed": _renewed,
    "Item.Returned": _ended,
    "Item.DeclaredLost": _ended,
    "Item.Corrected": _corrected,
    "Reader.Registered": _reader_registered,
    "Reader.Forgotten": _reader_forgotten,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    table = READERS if r.topic.startswith("Reader.") else NAME
    return ((table, r.originator_id),)


PROJECTION = Projection(
    NAME,
    (Table(NAME, LoanRow, key=("item_id",)), Table(READERS, ReaderRow, key=("reader_id",))),
    HANDLERS,
    _touches,
    description="open loans: reader id, item, borrowing library, due date, renewals",
)


# ----------------------------------------------------------------- queries


def query(
    conn: Any,
    *,
    at: datetime,
    library: str | None = None,
    reader_id: UUID | None = None,
    overdue: bool = False,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Open loans (by borrowing library, by reader, overdue at ``at``), ordered by due date."""
    where, params = ["true"], {"at": at, "limit": limit + 1}
    if library is not None:
        where.append("l.library = %(library)s")
        params["library"] = library
    if reader_id is not None:
        where.append("l.reader_id = %(reader_id)s")
        params["reader_id"] = reader_id
    if overdue:
        where.append("l.due_at < %(at)s")
    if after is not None:
        where.append("(l.due_at, l.item_id) > (%(due)s, %(item)s)")
        params.update(due=after[0], item=after[1])
    return dict_rows(
        conn,
        "SELECT l.loan_id, l.item_id, l.owner, i.barcode, i.title, l.library, l.reader_id,"
        " r.masked_number, l.borrowed_at, l.due_at, l.renewals, l.due_at < %(at)s AS overdue"
        f" FROM {NAME} l LEFT JOIN item_locations i ON i.item_id = l.item_id"
        f" LEFT JOIN {READERS} r ON r.reader_id = l.reader_id"
        f" WHERE {' AND '.join(where)} ORDER BY l.due_at, l.item_id LIMIT %(limit)s",
        params,
    )

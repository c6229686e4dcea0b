"""circulation_report: the facts the consortium's circulation figures are counted from.

Every counted occurrence is one row of ``report_facts`` (append-only, emitted in log
order with the position of the event that produced it): a loan, a renewal, a return,
a re-circulated volume, a shipment dispatched, received or ended otherwise, a loss.
Figures are then counts over those rows (``ledger.reports.circulation``), so

* a report for any period, library, region or month is one query;
* the report *as it was at instant T* is the same query over the facts whose
  position is at most the last position recorded by T: the fold is causal (a fact
  depends only on events before it in the log), so those rows are exactly what a
  replay of the events recorded by T produces;
* reader-visits (one reader at one library on one day) are distinct counts over the
  loan and return facts, which carry the reader's random id — no visit state to keep.

State kept while folding: each library's region, each reader's home library, and
each item that is away from home after a return at another library (a *stay*:
whether it has been lent again there yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple
from uuid import UUID

from ledger.eventlog import Record
from ledger.projections.base import Projection, Rows, Table

NAME = "circulation_report"
FACTS = "report_facts"
LIBRARIES = "report_libraries"
READERS = "report_readers"
STAYS = "report_stays"

#: Days are counted in the consortium's time zone. Asia/Shanghai has kept UTC+8 with no
#: daylight saving since 1991, so a fixed offset gives the same dates, several times
#: faster than a zoneinfo lookup per event.
LOCAL = timezone(timedelta(hours=8))

# Metrics, as stored in report_facts.metric.
LOAN = "loan"  # library: borrowing; other: reader's home library; ref: reader id
RENEWAL = "renewal"  # library: the lender (custodian); other: the desk that renewed
RETURN = "return"  # library: returning; other: where it was borrowed; ref: reader id
RECIRCULATED = "recirculated"  # library: where it was returned and lent again; other: owner
DISPATCHED = "dispatched"  # library: sender; other: destination; ref: transfer; at: when
RECEIVED = "received"  # library: destination; other: sender; ref: transfer; at: when
SHIPMENT_ENDED = "shipment_ended"  # cancelled, superseded or lost: ref: transfer; at: when
LOST = "lost"  # library: custodian when declared lost; other: owner; ref: item


class FactRow(NamedTuple):
    position: int
    day: date
    metric: str
    library: str
    other: str | None
    ref: UUID | None
    at: datetime | None


class LibraryRow(NamedTuple):
    code: str
    name: str
    region: str


class ReaderRow(NamedTuple):
    reader_id: UUID
    home_library: str


class StayRow(NamedTuple):
    item_id: UUID
    library: str  # the non-owning library it was returned at
    lent_again: bool  # counted as re-circulated already


def local_day(at: datetime) -> date:
    return at.astimezone(LOCAL).date()


def _fact(
    r: Record,
    rows: Rows,
    metric: str,
    library: str,
    other: str | None,
    ref: UUID | None,
    at: datetime | None = None,
) -> None:
    rows.emit(
        FACTS,
        FactRow(r.position, local_day(r.data["occurred_at"]), metric, library, other, ref, at),
    )


def _joined(r: Record, rows: Rows) -> None:
    d = r.data
    rows.put(LIBRARIES, d["code"], LibraryRow(d["code"], d["name"], d["region"]))


def _reader(r: Record, rows: Rows) -> None:
    rows.put(READERS, r.originator_id, ReaderRow(r.originator_id, r.data["home_library"]))


def _borrowed(r: Record, rows: Rows) -> None:
    d = r.data
    library = d["library"]
    reader: ReaderRow | None = rows.get(READERS, d["reader_id"])
    _fact(r, rows, LOAN, library, reader.home_library if reader else None, d["reader_id"])
    stay: StayRow | None = rows.get(STAYS, r.originator_id)
    if stay is not None and stay.library == library and not stay.lent_again:
        _fact(r, rows, RECIRCULATED, library, d["owner"], r.originator_id)
        rows.put(STAYS, r.originator_id, StayRow(r.originator_id, library, True))


def _renewed(r: Record, rows: Rows) -> None:
    d = r.data
    _fact(r, rows, RENEWAL, d["holding"], d["library"], d["loan_id"])


def _returned(r: Record, rows: Rows) -> None:
    d = r.data
    library = d["library"]
    _fact(r, rows, RETURN, library, d["borrowed_at_library"], d["reader_id"])
    if library == d["owner"]:
        rows.delete(STAYS, r.originator_id)
        return
    stay: StayRow | None = rows.get(STAYS, r.originator_id)
    if stay is None or stay.library != library:
        rows.put(STAYS, r.originator_id, StayRow(r.originator_id, library, False))


def _arrived_at(r: Record, rows: Rows, library: str) -> None:
    """The item is now at ``library``: a stay elsewhere is over."""
    stay: StayRow | None = rows.get(STAYS, r.originator_id)
    if stay is not None and stay.library != library:
        rows.delete(STAYS, r.originator_id)


def _dispatched(r: Record, rows: Rows) -> None:
    # The stay goes on while the item is on the road: a cancelled shipment puts it back.
    d = r.data
    _fact(r, rows, DISPATCHED, d["library"], d["to_library"], d["transfer_id"], d["occurred_at"])


def _received(r: Record, rows: Rows) -> None:
    d = r.data
    _fact(r, rows, RECEIVED, d["library"], d["from_library"], d["transfer_id"], d["occurred_at"])
    _arrived_at(r, rows, d["library"])


def _cancelled(r: Record, rows: Rows) -> None:
    d = r.data
    _fact(r, rows, SHIPMENT_ENDED, d["holding"], None, d["transfer_id"], d["occurred_at"])


def _unannounced(r: Record, rows: Rows) -> None:
    d = r.data
    if d.get("superseded_transfer_id") is not None:
        _fact(
            r,
            rows,
            SHIPMENT_ENDED,
            d["holding"],
            None,
            d["superseded_transfer_id"],
            d["occurred_at"],
        )
    _arrived_at(r, rows, d["library"])


def _lost(r: Record, rows: Rows) -> None:
    d = r.data
    _fact(r, rows, LOST, d["holding"], d["owner"], r.originator_id)
    if d.get("transfer_id") is not None:
        _fact(r, rows, SHIPMENT_ENDED, d["holding"], None, d["transfer_id"], d["occurred_at"])
    rows.delete(STAYS, r.originator_id)


def _gone(r: Record, rows: Rows) -> None:
    """Found (after a loss) or withdrawn: whatever stay there was has ended."""
    rows.delete(STAYS, r.originator_id)


def _corrected(r: Record, rows: Rows) -> None:
    location = r.data["changes"].get("location")
    if location is not None:
        _arrived_at(r, rows, location)


HANDLERS = {
    "Library.Joined": _joined,
    "Reader.Registered": _reader,
    "Item.Borrowed": _borrowed,
    "Item.Renewed": _renewed,
    "Item.Returned": _returned,
    "Item.TransferDispatched": _dispatched,
    "Item.TransferReceived": _received,
    "Item.TransferCancelled": _cancelled,
    "Item.ReceivedUnannounced": _unannounced,
    "Item.DeclaredLost": _lost,
    "Item.Found": _gone,
    "Item.Withdrawn": _gone,
    "Item.Corrected": _corrected,
}


def _touches(r: Record) -> Iterable[tuple[str, Any]]:
    if r.topic == "Item.Borrowed":
        return ((READERS, r.data["reader_id"]), (STAYS, r.originator_id))
    if r.topic.startswith("Item."):
        return ((STAYS, r.originator_id),)
    return ()


PROJECTION = Projection(
    NAME,
    (
        Table(FACTS, FactRow, log=True),
        Table(LIBRARIES, LibraryRow, key=("code",)),
        Table(READERS, ReaderRow, key=("reader_id",)),
        Table(STAYS, StayRow, key=("item_id",)),
    ),
    HANDLERS,
    _touches,
    description="circulation figures: loans, returns, cross-library flows, visits, transfers",
)

"""The circulation report: counts over the facts of the ``circulation_report`` projection.

Definitions (also in every report's output and in the README):
``DEFINITIONS`` below is the one place they are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ledger.domain.errors import InvalidInput, ProjectionBehind
from ledger.eventlog import position_at
from ledger.projections import tracking
from ledger.projections.circulation_report import NAME
from ledger.projections.paging import check_period

GROUPINGS = ("library", "region", "month", "flow")

#: The figures of one row, in the order tables and CSV show them.
METRICS = (
    "loans",
    "renewals",
    "returns",
    "cross_library_loans",
    "cross_library_returns",
    "borrowing_visits",
    "returning_visits",
    "recirculated",
    "transfers_dispatched",
    "transfers_received",
    "transfers_overdue",
    "items_lost",
)

DEFINITIONS: dict[str, str] = {
    "day": "Days are local days in Asia/Shanghai, of when it happened at the desk "
    "(occurred_at), not when it was uploaded.",
    "loans": "Borrows recorded at the library (the borrowing desk).",
    "renewals": "Renewals of loans the library lent (counted for the lender, wherever renewed).",
    "returns": "Returns taken back at the library's desk.",
    "cross_library_loans": "Loans borrowed at a library other than the reader's home library "
    "(where the reader registered). Not: loans of items owned elsewhere — the design notes "
    "define a cross-library loan by the item's owner; the consortium's published figure is "
    "about readers borrowing away from home, which is what is counted here.",
    "cross_library_returns": "Returns at a library other than the one where the item was "
    "borrowed (counted for the returning library).",
    "borrowing_visits": "Cross-library borrowing reader-visits: one reader at one library on "
    "one day with at least one cross-library loan, however many books. All loans' visits "
    "would also count readers borrowing at home; the consortium's figure is cross-library.",
    "returning_visits": "Cross-library returning reader-visits: one reader at one library on "
    "one day with at least one cross-library return.",
    "recirculated": "Re-circulated volumes: an item returned to a library that does not own "
    "it and lent again there before it left (went home, was received elsewhere, lost or "
    "withdrawn). Counted once per such stay, for that library, on the day it was lent again "
    "— not once per further loan during the stay, and not once per distinct item over the "
    "period (an item that floats twice to the same library in a period counts twice).",
    "transfers_dispatched": "Shipments dispatched from the library.",
    "transfers_received": "Shipments received at the library (unannounced arrivals, which "
    "have no shipment on record, are not counted).",
    "transfers_overdue": "Shipments not received within the configured number of days "
    "(LEDGER_TRANSIT_OVERDUE_DAYS) of dispatch — received late, or not at all by the "
    "report's instant — counted for the sender on the day the deadline passed. A cancelled "
    "or lost shipment is overdue only if it was still open at the deadline.",
    "items_lost": "Items declared lost, counted for the library that was responsible for "
    "them (the lender during a loan, the sender during a shipment, else where it was). "
    "Counting for the desk that declared the loss, or for the owner, would also be defensible.",
    "as_recorded_at": "With as_recorded_at T, only events the ledger had recorded by T count "
    "(late uploads after T do not), and overdue shipments are judged at T: the report as "
    "it would have been computed at T.",
    "scope": "A library's key sees its own rows and the consortium totals; the administrator "
    "sees every row.",
}


@dataclass(frozen=True)
class Request:
    start: date
    end: date
    by: str = "library"
    library: str | None = None  # a library's key: its own rows only
    as_recorded_at: datetime | None = None
    overdue_days: int = 7

    def check(self) -> None:
        check_period(self.start, self.end)
        if self.by not in GROUPINGS:
            raise InvalidInput(
                f"unknown grouping {self.by!r}: one of {', '.join(GROUPINGS)}", field="by"
            )
        if self.as_recorded_at is not None and self.as_recorded_at.tzinfo is None:
            raise InvalidInput("as_recorded_at needs a time zone offset", field="as_recorded_at")


_COUNTS = """
    count(*) FILTER (WHERE f.metric = 'loan') AS loans,
    count(*) FILTER (WHERE f.metric = 'renewal') AS renewals,
    count(*) FILTER (WHERE f.metric = 'return') AS returns,
    count(*) FILTER (WHERE f.metric = 'loan' AND f.other IS DISTINCT FROM f.library)
        AS cross_library_loans,
    count(*) FILTER (WHERE f.metric = 'return' AND f.other IS DISTINCT FROM f.library)
        AS cross_library_returns,
    count(*) FILTER (WHERE f.metric = 'recirculated') AS recirculated,
    count(*) FILTER (WHERE f.metric = 'dispatched') AS transfers_dispatched,
    count(*) FILTER (WHERE f.metric = 'received') AS transfers_received,
    count(*) FILTER (WHERE f.metric = 'lost') AS items_lost
"""

#: Reader-visits: distinct (reader, library, day) among cross-library loans and returns.
#: A hashed DISTINCT in a subquery, several times faster than count(DISTINCT …) per group.
_VISITS = """
    SELECT v.key,
        count(*) FILTER (WHERE v.metric = 'loan') AS borrowing_visits,
        count(*) FILTER (WHERE v.metric = 'return') AS returning_visits
    FROM (
        SELECT DISTINCT {key} AS key, f.metric, f.ref, f.library, f.day
        FROM report_facts f {join}
        WHERE f.metric IN ('loan', 'return') AND f.other IS DISTINCT FROM f.library
          AND f.day BETWEEN %(start)s AND %(end)s AND f.position <= %(position)s {scope}
    ) v
    GROUP BY 1
"""

#: Shipments overdue at the report's instant: dispatched (by the position), deadline
#: passed (by the instant) within the period, and no receipt or end by the deadline.
_OVERDUE = """
    SELECT {key} AS key, count(*) AS transfers_overdue
    FROM (
        SELECT f.library, f.ref, f.at + make_interval(days => %(days)s) AS deadline
        FROM report_facts f
        WHERE f.metric = 'dispatched' AND f.position <= %(position)s
    ) f
    {join}
    WHERE f.deadline <= %(instant)s
      AND (f.deadline AT TIME ZONE 'Asia/Shanghai')::date BETWEEN %(start)s AND %(end)s
      {scope}
      AND NOT EXISTS (
        SELECT 1 FROM report_facts e
        WHERE e.ref = f.ref AND e.metric IN ('received', 'shipment_ended')
          AND e.position <= %(position)s AND e.at <= f.deadline)
    GROUP BY 1
"""

_KEYS = {
    "library": ("f.library", ""),
    "region": (
        "coalesce(l.region, 'unknown')",
        "LEFT JOIN report_libraries l ON l.code = f.library",
    ),
    "month": ("to_char({day}, 'YYYY-MM')", ""),
    "total": ("'total'", ""),
}


def report(
    conn: psycopg.Connection[Any],
    request: Request,
    *,
    wait: float = 5.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report for ``request``, from the projection's facts."""
    request.check()
    instant = request.as_recorded_at or now or datetime.now(UTC)
    folded = tracking.positions(conn, [NAME]).get(NAME, 0)
    if request.as_recorded_at is None:
        position = folded
    else:
        position = position_at(conn, request.as_recorded_at)
        if folded < position and not tracking.wait_for(conn, [NAME], position, wait):
            raise ProjectionBehind(
                f"the report projection is at position {folded}; the report as recorded at "
                f"{request.as_recorded_at.isoformat()} needs {position}: is `tongjie project` "
                "running? (or run `tongjie rebuild circulation_report`)"
            )
    params = {
        "start": request.start,
        "end": request.end,
        "position": position,
        "instant": instant,
        "days": request.overdue_days,
        "library": request.library,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        totals = _grouped(cur, "total", params, scoped=False)
        body = totals.get("total") or dict.fromkeys(METRICS, 0)
        if request.by == "flow":
            rows = _flows(cur, params, scoped=request.library is not None)
        else:
            grouped = _grouped(cur, request.by, params, scoped=request.library is not None)
            rows = [{request.by: key, **values} for key, values in sorted(grouped.items())]
        region_flows = _region_flows(cur, params) if request.by == "region" else None
    out: dict[str, Any] = {
        "report": "circulation",
        "from": request.start,
        "to": request.end,
        "by": request.by,
        "scope": request.library or "consortium",
        "as_recorded_at": request.as_recorded_at,
        "position": position,
        "overdue_after_days": request.overdue_days,
        "columns": _columns(request.by),
        "rows": rows,
        "totals": body,
        "definitions": DEFINITIONS,
    }
    if region_flows is not None:
        out["region_flows"] = region_flows
    return out


def _columns(by: str) -> list[str]:
    if by == "flow":
        return ["borrowed_at", "returned_at", "returns"]
    return [by, *METRICS]


def _grouped(
    cur: psycopg.Cursor[Any], by: str, params: dict[str, Any], *, scoped: bool
) -> dict[str, dict[str, int]]:
    key, join = _KEYS[by]
    scope = "AND f.library = %(library)s" if scoped else ""
    counts = sql.SQL(
        "SELECT {key} AS key, " + _COUNTS + " FROM report_facts f {join}"
        " WHERE f.day BETWEEN %(start)s AND %(end)s AND f.position <= %(position)s {scope}"
        # A shipment's end counts nothing itself (it only stops the overdue clock): without
        # this, a cancellation in another month or at the other end made a row of zeros.
        " AND f.metric <> 'shipment_ended'"
        " GROUP BY 1"
    ).format(key=sql.SQL(key.format(day="f.day")), join=sql.SQL(join), scope=sql.SQL(scope))
    out: dict[str, dict[str, int]] = {}
    for row in cur.execute(counts, params).fetchall():
        out[row.pop("key")] = {m: row.get(m, 0) for m in METRICS}
    visits = sql.SQL(_VISITS).format(
        key=sql.SQL(key.format(day="f.day")), join=sql.SQL(join), scope=sql.SQL(scope)
    )
    for row in cur.execute(visits, params).fetchall():
        target = out.setdefault(row["key"], dict.fromkeys(METRICS, 0))
        target["borrowing_visits"] = row["borrowing_visits"]
        target["returning_visits"] = row["returning_visits"]
    overdue = sql.SQL(_OVERDUE).format(
        key=sql.SQL(key.format(day="(f.deadline AT TIME ZONE 'Asia/Shanghai')::date")),
        join=sql.SQL(join),
        scope=sql.SQL(scope),
    )
    for row in cur.execute(overdue, params).fetchall():
        target = out.setdefault(row["key"], dict.fromkeys(METRICS, 0))
        target["transfers_overdue"] = row["transfers_overdue"]
    return out  # every row was made with all of METRICS


def _flows(cur: psycopg.Cursor[Any], params: dict[str, Any], *, scoped: bool) -> list[dict]:
    scope = "AND (f.library = %(library)s OR f.other = %(library)s)" if scoped else ""
    rows = cur.execute(
        "SELECT f.other AS borrowed_at, f.library AS returned_at, count(*) AS returns"
        " FROM report_facts f WHERE f.metric = 'return'"
        " AND f.day BETWEEN %(start)s AND %(end)s AND f.position <= %(position)s "
        + scope
        + " GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    ).fetchall()
    return [dict(r) for r in rows]


def _region_flows(cur: psycopg.Cursor[Any], params: dict[str, Any]) -> list[dict]:
    """Sichuan↔Chongqing: returns by borrowing × returning region; loans by the reader's
    home region × the borrowing library's region."""
    rows = cur.execute(
        "SELECT f.metric, coalesce(a.region, 'unknown') AS from_region,"
        " coalesce(b.region, 'unknown') AS to_region, count(*) AS n"
        " FROM report_facts f"
        " LEFT JOIN report_libraries a ON a.code = f.other"
        " LEFT JOIN report_libraries b ON b.code = f.library"
        " WHERE f.metric IN ('loan', 'return')"
        " AND f.day BETWEEN %(start)s AND %(end)s AND f.position <= %(position)s"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        params,
    ).fetchall()
    what = {"loan": "loans (reader's home region → borrowing region)",
            "return": "returns (borrowing region → returning region)"}  # fmt: skip
    return [
        {"flow": what[r["metric"]], "from": r["from_region"], "to": r["to_region"], "n": r["n"]}
        for r in rows
    ]

"""Report rebuild over a long history, against the raw floor measured in the same run.

1. A history of ``--events`` events (default 1,000,000) from ``ledger.demo.bulk``.
2. The floor: reading the stored events the report folds once, in the rebuild's own
   pages (binary, filtered by topic), doing nothing with them.
3. ``rebuild circulation_report``: read, decode, fold, COPY, index, swap.
   Target: rebuild throughput ≥ 0.3 × the floor's.
4. Reports over the whole history: by library, by month, as recorded at mid-history.
5. An evidence file for an item with ≥ 1,000 events. Target: < 100 ms.

    python -m benchmarks.report [--events 1000000] [--item-events 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import date
from uuid import UUID

import psycopg

from benchmarks._db import scratch_database
from ledger import commands as c
from ledger.demo.bulk import generate
from ledger.disputes.evidence import build, render_html
from ledger.domain.common import Actor
from ledger.domain.identity import IdentityHasher
from ledger.eventlog import EventLog
from ledger.progress import bar
from ledger.projections import tracking
from ledger.projections.circulation_report import PROJECTION
from ledger.replay import pages, rebuild
from ledger.reports.circulation import Request, report
from ledger.store import EVENTS_TABLE, eventsourcing_env

ADMIN = Actor("admin:bench")
HOME, AWAY = "SC-510100", "CQ-500103"


def floor(dsn: str) -> tuple[float, int]:
    """Seconds to read every event the report folds, once, as the rebuild reads them."""
    topics = sorted(PROJECTION.topics)
    with psycopg.connect(dsn, autocommit=True) as conn:
        head = tracking.head(conn)
        started = time.perf_counter()
        n = sum(len(rows) for _, rows in pages(conn, 0, head, topics))
        return time.perf_counter() - started, n


def evidence_item(dsn: str, item_events: int) -> tuple[object, int]:
    from ledger.application import Circulation

    app = Circulation(eventsourcing_env(dsn, pool_size=2), hasher=IdentityHasher(b"k" * 32))
    home, away = Actor("key:home", HOME), Actor("key:away", AWAY)
    app.execute(c.RegisterItem(owner=HOME, barcode="EVIDENCE-1", actor=home))
    reader = UUID(
        app.execute(
            c.RegisterReader(
                document="resident_id", number="11010519491231002X", library=HOME, actor=home
            )
        ).outcome["reader_id"]
    )
    with bar(item_events, "evidence item", unit="ev") as progress:
        while (item := app.get_item(HOME, "EVIDENCE-1")) is not None and item.version < (
            item_events
        ):
            app.execute(
                c.Borrow(
                    owner=HOME, barcode="EVIDENCE-1", library=HOME, reader_id=reader, actor=home
                )
            )
            app.execute(c.Return(owner=HOME, barcode="EVIDENCE-1", library=HOME, actor=home))
            progress.update(2)
    app.execute(
        c.Borrow(owner=HOME, barcode="EVIDENCE-1", library=HOME, reader_id=reader, actor=home)
    )
    app.execute(c.Return(owner=HOME, barcode="EVIDENCE-1", library=AWAY, actor=away))
    app.execute(
        c.Dispatch(owner=HOME, barcode="EVIDENCE-1", library=AWAY, to_library=HOME, actor=away)
    )
    dispute = app.execute(
        c.OpenDispute(
            owner=HOME,
            barcode="EVIDENCE-1",
            kind="not_received",
            other_party=AWAY,
            statement="never arrived",
            library=HOME,
            actor=home,
        )
    ).outcome["dispute_id"]
    dispute = UUID(dispute)
    events = app.get_item(HOME, "EVIDENCE-1").version  # type: ignore[union-attr]
    return (app, dispute), events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--item-events", type=int, default=1_000)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    with scratch_database() as dsn:
        started = time.perf_counter()
        with bar(args.events, "history", unit="ev") as progress:
            summary = generate(dsn, args.events, progress=progress.update)
        print(f"history: {summary.events:,} events in {time.perf_counter() - started:.0f}s")

        floor_s, read = floor(dsn)
        floor_s2, _ = floor(dsn)  # warm, like the rebuild's second read would be
        floor_s = min(floor_s, floor_s2)
        rebuilt = rebuild(dsn, ["circulation_report"])
        with psycopg.connect(dsn) as conn:
            facts = conn.execute("SELECT count(*) FROM report_facts").fetchone()[0]
            total = conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()[0]
        floor_rate = read / floor_s
        rebuild_rate = rebuilt.events_read / rebuilt.seconds
        print(f"events stored: {total:,}; folded by the report: {read:,}; facts: {facts:,}")
        print(f"floor (read once):  {floor_s:7.2f}s  {floor_rate:>12,.0f} events/s")
        print(f"rebuild:            {rebuilt.seconds:7.2f}s  {rebuild_rate:>12,.0f} events/s")
        print(f"rebuild / floor:    {rebuild_rate / floor_rate:.2f}x  (target >= 0.30x)")

        everything = (date(2000, 1, 1), date(2100, 12, 31))
        with psycopg.connect(dsn) as conn:
            for by in ("library", "month", "region", "flow"):
                t0 = time.perf_counter()
                result = report(conn, Request(*everything, by=by))
                took = time.perf_counter() - t0
                print(f"report by {by:<8} {took:6.2f}s  {len(result['rows'])} rows")
            middle = conn.execute(
                f"SELECT recorded_at FROM {EVENTS_TABLE} WHERE notification_id >= %s"
                " ORDER BY notification_id LIMIT 1",
                (total // 2,),
            ).fetchone()[0]
            t0 = time.perf_counter()
            report(conn, Request(*everything, as_recorded_at=middle))
            print(f"report as recorded at mid-history {time.perf_counter() - t0:6.2f}s")

        (app, dispute), events = evidence_item(dsn, args.item_events)
        try:
            log = EventLog(app.pool)
            build(log, dispute)  # warm: connection, prepared statement, template
            timings = []
            for _ in range(7):
                t0 = time.perf_counter()
                file = build(log, dispute)
                timings.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            render_html(file)
            html = time.perf_counter() - t0
        finally:
            app.close()
        ms = statistics.median(timings) * 1000
        print(
            f"evidence file, item with {events} events: {ms:.1f} ms median, "
            f"{min(timings) * 1000:.1f} ms best of {len(timings)} (target < 100 ms); "
            f"HTML page +{html * 1000:.1f} ms"
        )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Rebuild speed of all projections, against two baselines measured in the same run.

On a generated history (``ledger.demo.bulk``, default 1,000,000 events):

* baseline (a): eventsourcing's own ``ProjectionRunner`` over the same events (same
  topics), with the smallest useful per-event projection (upsert one row per item and
  the tracking row, one transaction per event, as the runner does), run on a prefix
  for ``--runner-seconds``;
* baseline (b), the raw floor: read the same stored events the same way the rebuild
  does (binary keyset pages of the same topics, the next page prefetched) and COPY one
  row per event into an UNLOGGED table;
* the rebuild (``ledger.replay.rebuild`` of every registered projection, in a child
  process so its peak RSS is its own; RSS is sampled along the way to show it does not
  grow with the history);
* projection lag: ``python -m ledger project`` running while commands arrive at
  ``--rate`` per second for ``--lag-seconds``; lag = from a command's answer to the
  moment every projection has folded its events.

Rates are log positions per second (the notification ids covered), the same basis for
all three. Targets (issue 3): rebuild >= 30x (a), >= 0.4x (b), peak RSS < 1 GiB,
lag < 1 s at 200 commands/s.

    python -m benchmarks.rebuild [--events 1000000] [--runner-seconds 30]

``--template DB`` copies a database (on ``LEDGER_BENCH_DATABASE_URL``'s server) that holds
a history this generator made earlier, instead of generating one again.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import singledispatchmethod
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg import sql

from benchmarks._db import scratch_database
from ledger import commands as c
from ledger.projections import REGISTRY
from ledger.projections import tracking as t
from ledger.replay import pages
from ledger.store import eventsourcing_env

#: The projections rebuilt (``--projections``; default every registered one) and the
#: topics they fold: baselines read exactly these events too.
NAMES: list[str] = list(REGISTRY)
TOPICS: list[str] = []


def choose(names: list[str] | None) -> None:
    NAMES[:] = names or list(REGISTRY)
    TOPICS[:] = sorted(set().union(*(REGISTRY[n].topics for n in NAMES)))


def gigabytes(kib: float) -> str:
    return f"{kib / 1024 / 1024:.2f} GiB"


# ------------------------------------------------------------------- history


def make_history(dsn: str, events: int) -> tuple[int, float]:
    from ledger.demo.bulk import generate
    from ledger.progress import bar

    started = time.perf_counter()
    with bar(events, "generating history", unit="ev") as progress:
        summary = generate(dsn, events, progress=progress.update)
    return summary.events, time.perf_counter() - started


def head(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return t.head(conn)


def counted_events(dsn: str, upto: int | None = None) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM circulation_events WHERE split_part(topic, ':', 2) = ANY(%s)"
            " AND notification_id <= %s",
            (TOPICS, upto if upto is not None else 2**62),
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def copy_of(template: str) -> Iterator[str]:
    """A scratch copy of an existing history database, migrated, dropped afterwards."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from ledger.store import migrate

    server = os.environ.get("LEDGER_BENCH_DATABASE_URL")
    if not server:
        raise SystemExit("--template needs LEDGER_BENCH_DATABASE_URL (the template's server)")
    name = f"tongjie_bench_copy_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    dsn = make_conninfo(**{**conninfo_to_dict(server), "dbname": name})
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# ------------------------------------------------------- baseline (b): floor


def floor(dsn: str) -> float:
    """Read the same stored events as the rebuild, COPY one row each into an unlogged table."""
    last = head(dsn)
    with (
        psycopg.connect(dsn, autocommit=True) as reader,
        psycopg.connect(dsn, autocommit=True) as writer,
    ):
        writer.execute(
            "CREATE UNLOGGED TABLE bench_floor (notification_id bigint, originator_id uuid,"
            " originator_version bigint, topic text)"
        )
        started = time.perf_counter()
        with writer.cursor().copy(
            "COPY bench_floor (notification_id, originator_id, originator_version, topic)"
            " FROM STDIN"
        ) as copy:
            for _, rows in pages(reader, 0, last, TOPICS):
                for row in rows:
                    copy.write_row(row[:4])
        seconds = time.perf_counter() - started
        writer.execute("DROP TABLE bench_floor")
    return last / seconds


# -------------------------------------------------------------- the rebuild


def _rebuild_child(dsn: str, names: list[str], out: Any) -> None:
    from ledger.replay import rebuild

    samples: list[tuple[float, float]] = []  # (fraction of the log, peak RSS KiB)
    marks = [0.25, 0.5, 0.75]

    def progress(position: int, last: int) -> None:
        while marks and position >= marks[0] * last:
            samples.append((marks.pop(0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))

    report = rebuild(dsn, names, progress=progress)
    samples.append((1.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    out.put((report.position, report.events_read, report.seconds, samples, report))


def rebuild_in_child(dsn: str) -> tuple[int, int, float, list[tuple[float, float]], Any]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_rebuild_child, args=(dsn, list(NAMES), out))
    child.start()
    result = out.get()
    child.join()
    return result


# ------------------------------------------------- baseline (a): the runner


class RunnerView(PostgresTrackingRecorder):
    """One row per item (its last topic and position), and the tracking row."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS bench_runner_items"
                " (item_id uuid PRIMARY KEY, topic text NOT NULL, position bigint NOT NULL)"
            )
        )

    def record(self, item_id: Any, topic: str, tracking: Any) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO bench_runner_items VALUES (%s, %s, %s) ON CONFLICT (item_id)"
                " DO UPDATE SET topic = EXCLUDED.topic, position = EXCLUDED.position",
                (item_id, topic, tracking.notification_id),
                prepare=True,
            )
            self._insert_tracking(curs, tracking)


class RunnerProjection(Projection[RunnerView]):
    name = "bench_runner"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Any) -> None:
        self.view.record(domain_event.originator_id, type(domain_event).__qualname__, tracking)


class Ledger(Application):
    """Reads the ledger's event table (``circulation_events``) with the stock recorder."""

    name = "Circulation"


def runner_baseline(dsn: str, seconds: float) -> tuple[float, int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        full = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT topic FROM circulation_events"
                " WHERE split_part(topic, ':', 2) = ANY(%s)",
                (TOPICS,),
            )
        ]
    RunnerProjection.topics = tuple(full)
    env = {**eventsourcing_env(dsn, pool_size=4), "BENCH_RUNNER_CREATE_TABLE": "yes"}
    runner = ProjectionRunner(
        application_class=Ledger,
        projection_class=RunnerProjection,
        view_class=RunnerView,
        env=env,
    )
    started = time.perf_counter()
    with runner:
        time.sleep(seconds)
        reached = runner.view.max_tracking_id(Ledger.name) or 0
        elapsed = time.perf_counter() - started
    return reached / elapsed, reached, counted_events(dsn, reached)


# ---------------------------------------------------------------------- lag


def lag(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    from uuid import UUID

    from ledger.application import Circulation
    from ledger.domain.common import Actor
    from ledger.domain.identity import IdentityHasher

    env = {**os.environ, "LEDGER_DATABASE_URL": dsn}
    worker = subprocess.Popen([sys.executable, "-m", "ledger", "project", *NAMES], env=env)
    app = Circulation(
        eventsourcing_env(dsn, pool_size=8), hasher=IdentityHasher(b"b" * 32), loan_limit=100
    )
    library = "SC-510100"
    desk = Actor(f"key:{library}", library)
    callers = 32  # enough desks in flight that the rate is set by the schedule, not latency
    readers = []
    for i in range(callers):
        body = f"51010419800{i % 9 + 1}01{i % 1000:03d}"
        from stdnum.cn import ric

        number = body + ric.calc_check_digit(body + "0")
        result = app.execute(
            c.RegisterReader(document="resident_id", number=number, library=library, actor=desk)
        )
        readers.append(UUID(result.outcome["reader_id"]))
    names = list(NAMES)
    stop = threading.Event()
    seen: list[tuple[float, int]] = []

    def monitor() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                current = t.positions(conn, names)
                seen.append((time.perf_counter(), min(current.values())))
                time.sleep(0.005)

    done: list[tuple[float, int]] = []
    total = int(rate * seconds)
    counter = iter(range(total))
    lock = threading.Lock()
    start = time.perf_counter() + 1.0

    def caller(index: int) -> None:
        n = 0
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            barcode = f"LAG-{index}-{n // 3}"
            step = n % 3
            if step == 0:
                result = app.execute(c.RegisterItem(owner=library, barcode=barcode, actor=desk))
            elif step == 1:
                result = app.execute(
                    c.Borrow(
                        owner=library,
                        barcode=barcode,
                        library=library,
                        reader_id=readers[index],
                        actor=desk,
                    )
                )
            else:
                result = app.execute(
                    c.Return(owner=library, barcode=barcode, library=library, actor=desk)
                )
            n += 1
            done.append((time.perf_counter(), max(result.notification_ids)))

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:  # the worker is caught up
            assert t.wait_for(conn, names, t.head(conn), 120)
        watcher = threading.Thread(target=monitor)
        watcher.start()
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        finished = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            t.wait_for(conn, names, max(p for _, p in done), 30)
        time.sleep(0.05)
        stop.set()
        watcher.join()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        app.close()
    lags = []
    for when, position in done:
        reached = next((at for at, p in seen if p >= position and at >= when), None)
        lags.append((reached - when) if reached is not None else float("inf"))
    lags.sort()

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p * len(lags)))]

    return {
        "commands": len(done),
        "rate": len(done) / (finished - start),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": lags[-1],
    }


# --------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runner-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument(
        "--projections", nargs="*", help=f"default: all registered ({', '.join(REGISTRY)})"
    )
    parser.add_argument("--template", help="copy this history database instead of generating")
    parser.add_argument(
        "--lag-only", action="store_true", help="measure only the projection lag (no rebuild)"
    )
    args = parser.parse_args()
    choose(args.projections)
    load_before = os.getloadavg()
    with copy_of(args.template) if args.template else scratch_database() as dsn:
        if args.template:
            generated = head(dsn)
            print(f"history: copied from {args.template}", flush=True)
        else:
            generated, generation_seconds = make_history(dsn, args.events)
            print(
                f"history generated in {generation_seconds:.0f}s "
                f"({generated / generation_seconds:,.0f} events/s)",
                flush=True,
            )
        last = head(dsn)
        relevant = counted_events(dsn)
        print(
            f"history: {generated:,} events ({relevant:,} of the projections' topics)",
            flush=True,
        )
        if args.lag_only:
            from ledger.replay import rebuild

            rebuild(dsn, NAMES)  # the worker starts caught up
            print_lag(lag(dsn, args.rate, args.lag_seconds), os.getloadavg())
            return
        floor_rate = floor(dsn)
        print(f"baseline (b) raw floor      {floor_rate:12,.0f} positions/s", flush=True)
        position, events_read, seconds, samples, report = rebuild_in_child(dsn)
        rebuild_rate = position / seconds
        print(
            f"rebuild, all projections    {rebuild_rate:12,.0f} positions/s "
            f"({events_read / seconds:,.0f} events folded/s; {seconds:.1f}s for {position:,})",
            flush=True,
        )
        print(
            "  phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.phases.items()),
            flush=True,
        )
        runner_rate, runner_reached, runner_events = runner_baseline(dsn, args.runner_seconds)
        print(
            f"baseline (a) ProjectionRunner {runner_rate:10,.0f} positions/s "
            f"(prefix of {runner_reached:,} positions, {runner_events:,} events, "
            f"{args.runner_seconds:.0f}s)",
            flush=True,
        )
        lag_figures = lag(dsn, args.rate, args.lag_seconds)
    peak = samples[-1][1]
    print()
    print(f"projections: {', '.join(NAMES)}")
    print(f"positions in the log: {last:,}; rows written: {report.rows_written}")
    print(f"rebuild / baseline (a) runner: {rebuild_rate / runner_rate:8.1f}x   (target >= 30x)")
    print(f"rebuild / baseline (b) floor:  {rebuild_rate / floor_rate:8.2f}x   (target >= 0.4x)")
    print(
        "rebuild peak RSS: "
        + ", ".join(f"{gigabytes(kib)} at {frac:.0%}" for frac, kib in samples)
        + f"   (target < 1 GiB; peak {gigabytes(peak)})"
    )
    print_lag(lag_figures, load_before)


def print_lag(figures: dict[str, float], load_before: tuple[float, float, float]) -> None:
    load_after = os.getloadavg()
    print(
        f"projection lag at {figures['rate']:.0f} commands/s "
        f"({figures['commands']:.0f} commands): p50 {figures['p50'] * 1000:.0f} ms, "
        f"p95 {figures['p95'] * 1000:.0f} ms, p99 {figures['p99'] * 1000:.0f} ms, "
        f"max {figures['max'] * 1000:.0f} ms   (target < 1 s)"
    )
    print(
        f"machine load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}, after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}"
        f" on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()

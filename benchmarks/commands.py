"""Borrow+return commands per second through Circulation, against a same-run baseline.

Baseline: single-row INSERT + COMMIT into a plain table, from the same number of
concurrent callers, over connections with the same settings (psycopg 3, autocommit,
one connection per caller from a pool). Then the ledger, with group commit on and
off: each caller borrows and returns its own items, so the rules run for real and
nothing is refused. Prints rates and ratios; targets (issue 2) are ≥ 1,000 commands/s
at 16 callers and ≥ 0.4 × the baseline.

    python -m benchmarks.commands [--callers 16] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from uuid import UUID

from psycopg_pool import ConnectionPool
from stdnum.cn import ric

from benchmarks._db import scratch_database
from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import Actor, library_id
from ledger.domain.identity import IdentityHasher
from ledger.store import eventsourcing_env

ADMIN = Actor("admin:bench")
HOME, AWAY = "SC-510100", "SC-510104"


def run_callers(
    callers: int, seconds: float, work: Callable[[int, Callable[[], bool]], int]
) -> float:
    """Run ``work(caller, keep_going)`` in threads; return operations per second."""
    counts = [0] * callers
    start_gate = threading.Barrier(callers + 1)
    deadline = [0.0]

    def keep_going() -> bool:
        return time.perf_counter() < deadline[0]

    def body(i: int) -> None:
        start_gate.wait()
        counts[i] = work(i, keep_going)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def baseline(dsn: str, callers: int, seconds: float) -> float:
    with ConnectionPool(
        dsn, min_size=callers, max_size=callers, kwargs={"autocommit": True}
    ) as pool:
        with pool.connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload text)"
            )

        def work(_: int, keep_going: Callable[[], bool]) -> int:
            n = 0
            with pool.connection() as conn:
                while keep_going():
                    conn.execute("INSERT INTO bench_rows (payload) VALUES (%s)", ("x" * 200,))
                    n += 1
            return n

        return run_callers(callers, seconds, work)


def ledger_rate(dsn: str, callers: int, seconds: float, group_commit: bool, tag: str) -> float:
    """Commands per second: each caller borrows and returns its own item, over and over."""
    app = Circulation(
        eventsourcing_env(dsn, pool_size=callers),
        hasher=IdentityHasher(b"k" * 32),
        loan_limit=1000,
        group_commit=group_commit,
    )
    try:
        home = Actor("key:home", HOME)
        readers, barcodes = _prepare(app, callers, tag, home)

        def work(i: int, keep_going: Callable[[], bool]) -> int:
            n = 0
            while keep_going():
                app.execute(
                    c.Borrow(
                        owner=HOME,
                        barcode=barcodes[i],
                        library=HOME,
                        reader_id=readers[i],
                        actor=home,
                    )
                )
                app.execute(c.Return(owner=HOME, barcode=barcodes[i], library=HOME, actor=home))
                n += 2
            return n

        return run_callers(callers, seconds, work)
    finally:
        app.close()


def _prepare(app: Circulation, callers: int, tag: str, home: Actor) -> tuple[list[UUID], list[str]]:
    """The libraries (once per database), one reader and one item per caller."""
    for code in (HOME, AWAY):
        if app.load([library_id(code)])[library_id(code)] is None:
            app.execute(
                c.JoinLibrary(
                    code=code,
                    name=code,
                    region="sichuan",
                    level="county",
                    policy={"return_mode": "float"},
                    actor=ADMIN,
                )
            )
    readers = [
        UUID(
            app.execute(
                c.RegisterReader(
                    document="resident_id", number=_number(i), library=HOME, actor=home
                )
            ).outcome["reader_id"]
        )
        for i in range(callers)
    ]
    barcodes = [f"{tag}-{i}" for i in range(callers)]
    for barcode in barcodes:
        app.execute(c.RegisterItem(owner=HOME, barcode=barcode, actor=home))
    return readers, barcodes


def _number(i: int) -> str:
    """A valid identity number per caller (Chengdu Wuhou district, born 1990)."""
    body = f"510104199001{(i % 28) + 1:02d}{i % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--rounds", type=int, default=3, help="Rounds of all measurements; medians are reported."
    )
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"base1": [], "base": [], "single": [], "group": []}
    with scratch_database() as dsn:
        # Interleaved rounds: a noisy neighbour slows every measurement of a round alike.
        for n in range(args.rounds):
            rates["base1"].append(baseline(dsn, 1, args.seconds))
            rates["base"].append(baseline(dsn, args.callers, args.seconds))
            for mode, grouped in (("single", False), ("group", True)):
                tag = f"{mode}{n}"
                rates[mode].append(ledger_rate(dsn, args.callers, args.seconds, grouped, tag))
    median = {k: statistics.median(v) for k, v in rates.items()}
    base = median["base"]
    print(f"callers: {args.callers}, {args.seconds:.0f}s per measurement, {args.rounds} rounds")
    print(f"{'':40} {'median':>10}   {'ratio':>6}   rounds")
    for key, label, unit in (
        ("base1", "baseline INSERT+COMMIT, 1 caller", "rows/s"),
        ("base", f"baseline INSERT+COMMIT, {args.callers} callers", "rows/s"),
        ("single", "ledger, one command per transaction", "cmd/s"),
        ("group", "ledger, group commit", "cmd/s"),
    ):
        each = " ".join(f"{r:.0f}" for r in rates[key])
        print(f"{label:40} {median[key]:10.0f}   {median[key] / base:5.2f}x   {each} {unit}")
    print("targets: group commit >= 1000 commands/s and >= 0.40x the 16-caller baseline")


if __name__ == "__main__":
    main()

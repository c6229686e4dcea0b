"""Tamper evidence, measured: full ``verify`` against the raw floor, the chain's cost on the
write path, and inclusion-proof latency — all in one run, on one history.

* History: ``ledger.demo.bulk`` records at least ``--events`` events of simulated
  circulation through the real handlers and recorder (chain included), then a checkpoint
  is signed.
* Verify throughput (events/s) against the floor: reading the same rows with the same
  server-side cursor and hashing each row once with hashlib (SHA-256 over its id, topic
  and state). ``verify`` does much more per row (the leaf layout, the leaf hash, the chain
  hash, the Merkle nodes, the chain rows and nodes read beside it). Target ≥ 0.5 × floor.
  Each is run twice, alternating; the better run of each is compared.
* Write path: borrow+return commands per second through ``Circulation`` with group commit
  (``benchmarks.commands.ledger_rate``, 16 callers), with the chain on and off
  (``LedgerRecorder.chain_events``, a switch that exists only for this measurement),
  alternated on-off-off-on on the same database. Target: at most 15 % slower with it.
* Inclusion proofs: ``--proofs`` random events of the whole history against the
  checkpoint, through ``Integrity.inclusion_proof`` over one open connection, and through
  the HTTP app (Flask test client: routing, schema, JSON). Target p99 < 10 ms.

    python -m benchmarks.verify [--events 1000000] [--callers 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from typing import Any

import psycopg
from ledger.recorder import LedgerRecorder
from psycopg import IsolationLevel

import ledger.demo.bulk as bulk
from benchmarks._db import scratch_database
from benchmarks.commands import ledger_rate
from ledger.eventlog import RAW_EVENTS_SQL, raw_event_cursor
from ledger.integrity.checkpoints import private_key
from ledger.integrity.service import Integrity, dsn_connect
from ledger.integrity.verify import stream, verify_store


def floor(dsn: str) -> tuple[int, float]:
    """Read every event as ``verify`` reads it and hash each row once: the least any
    verifier must do."""
    started = time.perf_counter()
    n = 0
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for _nid, oid, _version, _micros, topic, state in stream(
                raw_event_cursor(conn, "floor"), RAW_EVENTS_SQL
            ):
                sha256(b"".join((oid, topic, state))).digest()
                n += 1
    return n, time.perf_counter() - started


@contextmanager
def one_connection(dsn: str) -> Iterator[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:

        @contextmanager
        def connect() -> Iterator[psycopg.Connection[Any]]:
            yield conn

        yield connect


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = statistics.quantiles(ordered, n=100)
    return (
        f"p50 {ordered[len(ordered) // 2] * 1e3:6.2f} ms   p99 {p[98] * 1e3:6.2f} ms   "
        f"max {ordered[-1] * 1e3:6.2f} ms"
    )


def proof_latency(dsn: str, count: int) -> tuple[list[float], list[float], int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT notification_id FROM event_chain").fetchall()
    positions = random.Random(6).sample([r[0] for r in rows], min(count, len(rows)))
    service: list[float] = []
    with one_connection(dsn) as connect:
        integrity = Integrity(connect)
        path_length = len(integrity.inclusion_proof(positions[0]).path)
        for position in positions:
            started = time.perf_counter()
            integrity.inclusion_proof(position)
            service.append(time.perf_counter() - started)
    http: list[float] = []
    from ledger.application import Circulation
    from ledger.domain.identity import IdentityHasher
    from ledger.store import eventsourcing_env
    from web import create_app

    app = Circulation(eventsourcing_env(dsn, pool_size=2), hasher=IdentityHasher(b"k" * 32))
    try:
        client = create_app(app).test_client()
        for position in positions[: max(1, count // 4)]:
            started = time.perf_counter()
            response = client.get(f"/api/v1/proofs/inclusion?position={position}")
            http.append(time.perf_counter() - started)
            assert response.status_code == 200, response.json
    finally:
        app.close()
    return service, http, path_length


def write_path(dsn: str, callers: int, seconds: float) -> tuple[list[float], list[float]]:
    on: list[float] = []
    off: list[float] = []
    for round_, chained in enumerate((True, False, False, True)):
        LedgerRecorder.chain_events = chained
        try:
            rate = ledger_rate(dsn, callers, seconds, group_commit=True, tag=f"w{round_}")
        finally:
            LedgerRecorder.chain_events = True
        (on if chained else off).append(rate)
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--proofs", type=int, default=2_000)
    args = parser.parse_args()
    load = os.getloadavg()
    with scratch_database() as dsn:
        started = time.perf_counter()
        summary = bulk.generate(dsn, args.events)
        generated = time.perf_counter() - started
        Integrity(dsn_connect(dsn), private_key(os.urandom(32))).make_checkpoint()

        floors, verifies = [], []
        for _ in range(2):
            n, seconds = floor(dsn)
            floors.append(n / seconds)
            report = verify_store(dsn)
            assert report.ok, report.mismatch
            assert report.events == n
            verifies.append(report.events / report.seconds)

        service, http, path_length = proof_latency(dsn, args.proofs)
        on, off = write_path(dsn, args.callers, args.seconds)
    end_load = os.getloadavg()

    print(f"history: {summary.events:,} events (bulk generator, {generated:.0f}s to record)")
    print(f"load average before/after: {load[0]:.2f} / {end_load[0]:.2f} on {os.cpu_count()} cores")
    best_floor, best_verify = max(floors), max(verifies)
    print(
        "floor: read rows + one SHA-256 each   "
        + "  ".join(f"{r:10,.0f}" for r in floors)
        + f" events/s   (best {best_floor:,.0f}, 1.00x)"
    )
    print(
        "tongjie verify (chain, tree, nodes)   "
        + "  ".join(f"{r:10,.0f}" for r in verifies)
        + f" events/s   (best {best_verify:,.0f}, {best_verify / best_floor:.2f}x)"
    )
    print("  target: >= 0.50x the floor")
    mean_on, mean_off = statistics.mean(on), statistics.mean(off)
    print(
        f"commands/s, group commit, {args.callers} callers, {args.seconds:.0f}s each"
        f" (on-off-off-on): chain on {on[0]:,.0f} {on[1]:,.0f}, off {off[0]:,.0f} {off[1]:,.0f}"
    )
    print(
        f"  chain on {mean_on:,.0f} vs off {mean_off:,.0f}: {mean_on / mean_off:.2f}x"
        f" ({(1 - mean_on / mean_off) * 100:+.1f}% slower with the chain; target <= 15%)"
    )
    print(f"inclusion proof at {summary.events:,} events ({path_length} hashes):")
    print(f"  service, one connection   ({len(service)}) {percentiles(service)}")
    print(f"  HTTP app (test client)    ({len(http)}) {percentiles(http)}")
    print("  target: p99 < 10 ms")


if __name__ == "__main__":
    main()

"""The HTTP API against the ledger in-process, measured in the same run on the same database.

1. In-process: borrow+return commands/s through ``Circulation`` from ``--callers`` threads
   (``benchmarks.commands.ledger_rate``), and ``get_item`` latency from ``--clients``
   threads. The projection worker runs meanwhile, as it does beside the server.
2. Over HTTP: ``tongjie serve`` (gunicorn, ``--workers`` × ``--threads``, its projection
   worker) on loopback; the load comes from a second process, one keep-alive
   ``http.client`` connection per client thread: borrow+return pairs from ``--callers``
   clients, then ``GET /api/v1/items/{owner}/{barcode}`` from ``--clients`` clients, back
   to back (the server saturated: latency is mostly queueing, clients / rate), then paced
   at ``--paced`` of that rate (latency below capacity).

Each phase is bounded by ``--seconds`` and by ``--max-requests``. Prints rates, p50/p99
and the ratios; targets (issue 4): HTTP command rate >= 0.5x in-process, GET item p99
< 25 ms under 64 clients. Everything shares one machine: the server, PostgreSQL, the
projection worker and the load generator compete for the same cores.

    python -m benchmarks.http [--callers 16] [--clients 64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context

from benchmarks._db import scratch_database
from benchmarks.commands import HOME, _prepare, ledger_rate, run_callers
from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import Actor
from ledger.domain.identity import IdentityHasher
from ledger.keys import create_key
from ledger.store import connect, eventsourcing_env

#: A cold server migrates, forks its workers and opens their pools before it answers.
START_TIMEOUT = 120
#: Requests before each measured phase: connections opened, caches and pools warm.
WARM_UP_SECONDS = 1.0
#: Items the GET clients read (spread so no single aggregate is the whole cache).
GET_ITEMS = 256


@dataclass(frozen=True)
class Latency:
    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    count: int
    errors: int = 0

    @classmethod
    def of(cls, samples: list[float], elapsed: float, errors: int = 0) -> Latency:
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(len(samples) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3, len(samples), errors)


# ------------------------------------------------------------------ in-process


def inprocess_gets(dsn: str, items: list[str], clients: int, seconds: float, cap: int) -> Latency:
    """``get_item`` from ``clients`` threads, as a request handler calls it."""
    app = Circulation(eventsourcing_env(dsn, pool_size=clients), hasher=IdentityHasher(b"k" * 32))
    try:

        def get(n: int) -> object:
            return app.get_item(HOME, items[n % len(items)])

        _timed_calls(get, clients, WARM_UP_SECONDS, cap)
        return _timed_calls(get, clients, seconds, cap)
    finally:
        app.close()


def _timed_calls(
    call: Callable[[int], object],
    clients: int,
    seconds: float,
    cap: int,
    rate: float | None = None,
) -> Latency:
    """``call`` from ``clients`` threads: back to back, or each at ``rate / clients`` per
    second on a fixed schedule. Paced latency counts from the scheduled start, so a slow
    answer that delays the next request is charged to it (no coordinated omission)."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    per_client = max(1, cap // clients)
    interval = clients / rate if rate else 0.0

    def work(i: int, keep_going: Callable[[], bool]) -> int:
        mine = samples[i]
        n = i
        due = time.perf_counter() + interval * i / clients  # spread the clients' phases
        while keep_going() and len(mine) < per_client:
            if interval:
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                started = due
                due += interval
            else:
                started = time.perf_counter()
            call(n)
            mine.append(time.perf_counter() - started)
            n += clients
        return len(mine)

    started = time.perf_counter()
    run_callers(clients, seconds, work)
    elapsed = time.perf_counter() - started
    return Latency.of([s for mine in samples for s in mine], elapsed)


@contextmanager
def projection_worker(env: dict[str, str]) -> Iterator[None]:
    """``tongjie project`` beside the in-process run, as ``tongjie serve`` runs it beside the
    API (nothing when this ledger has no read models)."""
    from ledger.cli import main

    if "project" not in main.commands:
        yield
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "project"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


# ------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(env: dict[str, str], workers: int, threads: int) -> Iterator[tuple[str, int]]:
    """``tongjie serve`` as a process of its own; stopped with SIGTERM."""
    port = _free_port()
    command = [sys.executable, "-m", "ledger", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--threads", str(threads)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log: a line per request, not wanted here
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while _status("127.0.0.1", port, "/healthz") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"tongjie serve did not start:\n{log.read().decode()}")
                time.sleep(0.3)
            yield "127.0.0.1", port
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _status(host: str, port: int, path: str) -> int:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


# ------------------------------------------------------------------ the load (second process)


def load_commands(
    host: str,
    port: int,
    token: str,
    barcodes: list[str],
    readers: list[str],
    seconds: float,
    cap: int,
) -> tuple[float, int]:
    """Borrow+return pairs, one client per item; (commands per second, refused or failed)."""
    errors = [0] * len(barcodes)
    per_client = max(2, cap // len(barcodes))

    def work(i: int, keep_going: Callable[[], bool]) -> int:
        client = _Client(host, port, token)
        loan = json.dumps(
            {"owner": HOME, "barcode": barcodes[i], "library": HOME, "reader_id": readers[i]}
        ).encode()
        back = json.dumps({"owner": HOME, "barcode": barcodes[i], "library": HOME}).encode()
        n = 0
        while keep_going() and n < per_client:
            for path, body in (("/api/v1/loans", loan), ("/api/v1/returns", back)):
                if client.call("POST", path, body) != 201:
                    errors[i] += 1
                n += 1
        client.close()
        return n

    run_callers(len(barcodes), WARM_UP_SECONDS, work)
    return run_callers(len(barcodes), seconds, work), sum(errors)


def load_gets(
    host: str,
    port: int,
    token: str,
    items: list[str],
    clients: int,
    seconds: float,
    cap: int,
    rate: float | None = None,
) -> Latency:
    """GET item from ``clients`` keep-alive connections, back to back or paced at ``rate``."""
    connections = threading.local()
    errors = [0]

    def get(n: int) -> None:
        client = getattr(connections, "client", None)
        if client is None:
            client = connections.client = _Client(host, port, token)
        if client.call("GET", f"/api/v1/items/{HOME}/{items[n % len(items)]}") != 200:
            errors[0] += 1

    _timed_calls(get, clients, WARM_UP_SECONDS, cap, rate)
    measured = _timed_calls(get, clients, seconds, cap, rate)
    return Latency(measured.rate, measured.p50_ms, measured.p99_ms, measured.count, errors[0])


class _Client:
    """One keep-alive HTTP/1.1 connection with the desk's key."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: bytes | None = None) -> int:
        self.conn.request(method, path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=16, help="concurrent command clients")
    parser.add_argument("--clients", type=int, default=64, help="concurrent GET clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per measured phase")
    parser.add_argument("--workers", type=int, default=2, help="tongjie serve --workers")
    parser.add_argument("--threads", type=int, default=8, help="tongjie serve --threads")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.5,
        help="then GET at this share of the saturated HTTP rate, to see latency below capacity",
    )
    args = parser.parse_args()

    with scratch_database() as dsn, tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "LEDGER_DATABASE_URL": dsn,
            "LEDGER_DATA_DIR": data,
            "LEDGER_IDENTITY_KEY": (b"k" * 32).hex(),
        }
        home = Actor("key:home", HOME)
        app = Circulation(eventsourcing_env(dsn, pool_size=4), hasher=IdentityHasher(b"k" * 32))
        try:
            readers, barcodes = _prepare(app, args.callers, "http", home)
            items = [f"get-{n}" for n in range(GET_ITEMS)]
            for barcode in items:
                app.execute(c.RegisterItem(owner=HOME, barcode=barcode, actor=home))
        finally:
            app.close()
        with connect(dsn, autocommit=True) as conn:
            token = create_key(conn, library=HOME, label="benchmark")[1]

        with projection_worker(env):
            local_commands = ledger_rate(
                dsn, args.callers, args.seconds, group_commit=True, tag="inproc"
            )
            local_gets = inprocess_gets(dsn, items, args.clients, args.seconds, args.max_requests)

        with (
            serve(env, args.workers, args.threads) as (host, port),
            ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as loader,
        ):
            remote_commands, refused = loader.submit(
                load_commands,
                host,
                port,
                token,
                barcodes,
                [str(r) for r in readers],
                args.seconds,
                args.max_requests,
            ).result()
            remote_gets = loader.submit(
                load_gets, host, port, token, items, args.clients, args.seconds, args.max_requests
            ).result()
            paced_rate = remote_gets.rate * args.paced
            paced_gets = loader.submit(
                load_gets,
                host,
                port,
                token,
                items,
                args.clients,
                args.seconds,
                args.max_requests,
                paced_rate,
            ).result()

    load = os.getloadavg()
    print(
        f"tongjie serve --workers {args.workers} --threads {args.threads}; "
        f"{args.seconds:.0f}s per phase; {os.cpu_count()} CPUs; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end"
    )
    print(f"borrow+return, {args.callers} clients")
    print(f"  in-process           {local_commands:8.0f} commands/s   (1.00x)")
    print(
        f"  HTTP                 {remote_commands:8.0f} commands/s   "
        f"({remote_commands / local_commands:.2f}x)   {refused} refused or failed"
    )
    print(f"GET item, {args.clients} clients")
    paced = f"HTTP, paced {args.paced:.0%}"
    for label, measured in (
        ("in-process get_item", local_gets),
        ("HTTP, back to back", remote_gets),
        (paced, paced_gets),
    ):
        print(
            f"  {label:<20} {measured.rate:8.0f} reads/s      p50 {measured.p50_ms:6.2f} ms"
            f"   p99 {measured.p99_ms:6.2f} ms   ({measured.rate / local_gets.rate:.2f}x rate)"
            + (f"   {measured.errors} errors" if measured.errors else "")
        )
    print("targets: HTTP commands >= 0.50x in-process; GET item p99 < 25 ms")


if __name__ == "__main__":
    main()

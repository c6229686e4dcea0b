"""Exactly once: a real worker process killed mid-stream and restarted loses nothing and
applies nothing twice (its tables equal a rebuild), and it follows new commands live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from ledger import commands as c
from ledger.demo.bulk import generate
from ledger.projections import tracking as t
from ledger.projections.runner import wait_until
from ledger.replay import STAGING, rebuild
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, desk
from tests.test_projections import MINE, snapshot


def start_worker(dsn: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_DATA_DIR": str(tmp_path),
        "LEDGER_PROJECTION_BATCH": "150",  # many small transactions: a kill lands mid-stream
    }
    return subprocess.Popen([sys.executable, "-m", "ledger", "project"], env=env)


def positions(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return t.positions(conn, MINE)


def head(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return t.head(conn)


def test_a_killed_worker_resumes_exactly_where_it_committed(dsn: str, tmp_path: Path) -> None:
    generate(dsn, 15_000, items_per_library=8, readers=400)
    last = head(dsn)
    worker = start_worker(dsn, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while min(positions(dsn).values(), default=0) < last // 4:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed_at = positions(dsn)
    assert 0 < min(killed_at.values()) < last, killed_at  # mid-stream

    worker = start_worker(dsn, tmp_path)
    try:
        assert wait_until(dsn, last, MINE, timeout=120)
        # It keeps following: a new command reaches the views through LISTEN/NOTIFY.
        app = open_ledger(dsn)
        try:
            result = app.execute(
                c.RegisterItem(owner=CHENGDU, barcode="AFTER-KILL", actor=desk(CHENGDU))
            )
        finally:
            app.close()
        assert wait_until(dsn, max(result.notification_ids), MINE, timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    live = snapshot(dsn)
    rebuild(dsn, MINE)
    assert snapshot(dsn) == live
    assert len(live["item_locations"]) == 249 * 8 + 1


def test_a_rebuild_swaps_tables_under_a_running_worker(dsn: str, tmp_path: Path) -> None:
    generate(dsn, 6_000, items_per_library=4, readers=200)
    worker = start_worker(dsn, tmp_path)
    app = open_ledger(dsn)
    try:
        assert wait_until(dsn, head(dsn), MINE, timeout=60)
        stop = threading.Event()
        written: list[int] = []

        def desk_keeps_working() -> None:
            n = 0
            while not stop.is_set():
                result = app.execute(
                    c.RegisterItem(owner=CHENGDU, barcode=f"DURING-{n}", actor=desk(CHENGDU))
                )
                written.append(max(result.notification_ids))
                n += 1

        thread = threading.Thread(target=desk_keeps_working)
        thread.start()
        try:
            for _ in range(2):  # the worker's statements outlive the tables they were made on
                rebuild(dsn, MINE)
        finally:
            stop.set()
            thread.join()
        assert written and wait_until(dsn, max(written), MINE, timeout=60)
        assert worker.poll() is None
    finally:
        app.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    live = snapshot(dsn)
    rebuild(dsn, MINE)
    assert snapshot(dsn) == live
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM item_locations WHERE barcode LIKE 'DURING-%'")
        assert row.fetchone() == (len(written),)


def test_a_killed_rebuild_process_leaves_the_old_tables_and_a_rerun_is_clean(
    dsn: str, tmp_path: Path
) -> None:
    generate(dsn, 15_000, items_per_library=8, readers=400)
    rebuild(dsn, MINE)
    before, rebuilt_at = snapshot(dsn), rebuilt(dsn)
    env = {**os.environ, "LEDGER_DATABASE_URL": dsn, "LEDGER_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "ledger", "rebuild", "--all"], env=env)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not conn.execute(  # the rebuild holds its advisory locks while it works
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0]:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
        time.sleep(0.2)  # well into the fold
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL  # killed, not finished
    finally:
        if process.poll() is None:
            process.kill()
    assert rebuilt(dsn) == rebuilt_at  # it never reached its commit
    assert snapshot(dsn) == before  # the old tables still serve, untouched
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (STAGING,)
        ).fetchone() == (0,)
    rebuild(dsn, MINE)  # a rerun starts clean
    assert snapshot(dsn) == before
    assert rebuilt(dsn) != rebuilt_at


def rebuilt(dsn: str) -> list[tuple[str, object]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT name, rebuilt_at FROM {t.TABLE} WHERE name = ANY(%s) ORDER BY name", (MINE,)
        ).fetchall()

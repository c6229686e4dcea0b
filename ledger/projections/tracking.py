"""Where each projection is up to, and waiting for it (read-your-writes).

The position is the notification id of the last event folded in, committed in the
same transaction as the projection's rows. A command's response names the positions
of its events; a query that passes the highest one waits here until the projection
has folded it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psycopg

from ledger.eventlog import head  # the log's head, beside the positions that chase it (t.head)

TABLE = "projection_tracking"
#: Notified (in the committing transaction) whenever a projection advances.
CHANNEL = "tongjie_projections"


def positions(conn: psycopg.Connection[Any], names: Iterable[str] | None = None) -> dict[str, int]:
    if names is None:
        rows = conn.execute(f"SELECT name, position FROM {TABLE}").fetchall()
    else:
        rows = conn.execute(
            f"SELECT name, position FROM {TABLE} WHERE name = ANY(%s)", (list(names),)
        ).fetchall()
    return {_get(row, 0, "name"): _get(row, 1, "position") for row in rows}


def ensure(conn: psycopg.Connection[Any], names: Iterable[str]) -> None:
    """A tracking row for each projection (a projection added later starts at 0)."""
    conn.execute(
        f"INSERT INTO {TABLE} (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (list(names),),
    )


def wait_for(
    conn: psycopg.Connection[Any],
    names: Iterable[str],
    position: int,
    timeout: float,
) -> bool:
    """Wait until every named projection has folded ``position``; False on timeout.

    Polls with a short, growing interval: a tracking lookup is one index probe, and a
    reader waits at most a few commits of the worker.
    """
    wanted = list(names)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        current = positions(conn, wanted)
        if all(current.get(n, 0) >= position for n in wanted):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.1)


def lag(conn: psycopg.Connection[Any], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per projection: its position, how many notifications behind the log it is, and
    how long ago it last advanced."""
    last = head(conn)
    rows = conn.execute(
        f"SELECT name, position, extract(epoch FROM clock_timestamp() - updated_at) AS idle"
        f" FROM {TABLE} WHERE name = ANY(%s) ORDER BY name",
        (list(names),),
    ).fetchall()
    return {
        _get(r, 0, "name"): {
            "position": _get(r, 1, "position"),
            "behind": max(0, last - _get(r, 1, "position")),
            "idle_seconds": round(float(_get(r, 2, "idle")), 3),
        }
        for r in rows
    }


def _get(row: Any, index: int, name: str) -> Any:
    """Rows from eventsourcing's pool are dicts; plain connections give tuples."""
    return row[name] if isinstance(row, dict) else row[index]

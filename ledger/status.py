"""Counts for ``tongjie status``, straight from the event store and its side tables."""

from __future__ import annotations

from ledger.application import Circulation
from ledger.store import EVENTS_TABLE


def counts(app: Circulation) -> dict[str, int | str]:
    with app.datastore.get_connection() as conn:
        rows = conn.execute(
            f"SELECT split_part(topic, ':', 2) AS event, count(*) AS n FROM {EVENTS_TABLE}"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
        commands = conn.execute("SELECT count(*) AS n FROM command_log").fetchone()
        linked = conn.execute("SELECT count(*) AS n FROM reader_identities").fetchone()
        last = conn.execute(
            f"SELECT max(notification_id) AS id, max(recorded_at) AS at FROM {EVENTS_TABLE}"
        ).fetchone()
    result: dict[str, int | str] = {
        "events": sum(r["n"] for r in rows),
        "last position": last["id"] or 0,
        "last recorded at": str(last["at"] or "-"),
        "commands recorded": commands["n"],
        "readers linked": linked["n"],
    }
    for row in rows:
        result[f"  {row['event']}"] = row["n"]
    return result

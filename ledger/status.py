"""Counts for ``tongjie status``, straight from the event log and the writer's side tables."""

from __future__ import annotations

from ledger.eventlog import EventLog, counts_by_topic, last


def counts(log: EventLog) -> dict[str, int | str]:
    with log.connection() as conn:
        by_topic = counts_by_topic(conn)
        commands = conn.execute("SELECT count(*) AS n FROM command_log").fetchone()
        linked = conn.execute("SELECT count(*) AS n FROM reader_identities").fetchone()
        position, recorded_at = last(conn)
    result: dict[str, int | str] = {
        "events": sum(by_topic.values()),
        "last position": position,
        "last recorded at": str(recorded_at or "-"),
        "commands recorded": commands["n"],
        "readers linked": linked["n"],
    }
    for event, n in by_topic.items():
        result[f"  {event}"] = n
    return result

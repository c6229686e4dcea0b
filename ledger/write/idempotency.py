"""The idempotency log (``command_log``): a retried command gets its first answer.

A row per recorded command, written in the same transaction as its events: the
command's name, the fingerprint of what the caller sent, the outcome and where its
events sit. A retry with the same key and the same content is answered from the row;
the same key with other content is refused. The SQL for the table lives here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import Connection, Cursor

from ledger import commands as c
from ledger.domain.errors import IdempotencyKeyReused
from ledger.integrity.receipts import Receipt
from ledger.write.result import Result
from ledger.write.work import CommandRow, LoggedCommand


def replay(
    cmd: c.Command, row: LoggedCommand, receipt: Callable[[Sequence[int]], Receipt | None]
) -> Result | IdempotencyKeyReused:
    """The first answer for a retry; a refusal when the key was used for something else."""
    if row.command != cmd.command or row.fingerprint != cmd.fingerprint():
        return reused(cmd)
    ids = row.notification_ids
    return Result(cmd.command_id or "", row.outcome, ids, replayed=True, receipt=receipt(ids))


def reused(cmd: c.Command) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"idempotency key {cmd.command_id!r} was already used for a different command; "
        "use a new key for a new command",
        field="command_id",
    )


def row_for(cmd: c.Command, outcome: dict[str, Any], event_count: int) -> CommandRow:
    """A generated key can never be retried: its fingerprint is not kept."""
    return CommandRow(
        cmd.command_id or "",
        cmd.command,
        "" if cmd.generated_id else cmd.fingerprint(),
        outcome,
        cmd.actor.principal,
        event_count,
    )


# ------------------------------------------------------------------ PostgreSQL


def read(conn: Connection[Any], command_ids: Sequence[str]) -> dict[str, LoggedCommand]:
    if not command_ids:
        return {}
    rows = conn.execute(
        "SELECT command_id, command, fingerprint, outcome, notification_ids"
        " FROM command_log WHERE command_id = ANY(%s)",
        (list(command_ids),),
        prepare=True,
    ).fetchall()
    return {
        row["command_id"]: LoggedCommand(
            row["command"],
            row["fingerprint"],
            row["outcome"] if isinstance(row["outcome"], dict) else json.loads(row["outcome"]),
            tuple(row["notification_ids"]),
        )
        for row in rows
    }


def insert(curs: Cursor[Any], commands: Sequence[CommandRow], ids: Sequence[int]) -> None:
    """One statement whatever the batch size: the rows travel as one JSON document (the C
    encoder builds it in microseconds, where psycopg would adapt every array element)."""
    if not commands:
        return
    rows, start = [], 0
    for row in commands:
        rows.append(
            (
                row.command_id,
                row.command,
                row.fingerprint,
                row.outcome,
                ids[start : start + row.event_count],
                row.recorded_by,
            )
        )
        start += row.event_count
    curs.execute(
        "INSERT INTO command_log"
        " (command_id, command, fingerprint, outcome, notification_ids, recorded_by)"
        " SELECT r->>0, r->>1, r->>2, r->3,"
        "  ARRAY(SELECT jsonb_array_elements_text(r->4)::bigint), r->>5"
        " FROM jsonb_array_elements(%s::jsonb) AS r",
        (json.dumps(rows),),
        prepare=True,
    )

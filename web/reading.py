"""The read side's way into the database: the event log over the writer's pool.

One pool per process (DESIGN.md, storage): the read side borrows the writer's
``pool``, never the writer itself. The ``EventLog`` is made on first use (an app
built only for its spec has no ledger) and kept on the app.
"""

from __future__ import annotations

from flask import current_app

from ledger.eventlog import EventLog


def eventlog() -> EventLog:
    """The event log of the app serving this request."""
    found = current_app.extensions.get("tongjie.eventlog")
    if found is None:
        found = EventLog(current_app.extensions["tongjie.ledger"].pool)
        current_app.extensions["tongjie.eventlog"] = found
    return found

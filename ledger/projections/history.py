"""An item's full history and its state at any instant, from its own event stream.

Not a projection: the item's stream is read and folded one event at a time by the
domain itself (``Item``'s events' ``apply``), so every entry shows the state exactly
as the ledger had it after that event, with ``recorded_at`` from the event store.

*As of* an instant: by default the instant is compared with ``occurred_at`` (what
happened at the desk then). A desk that syncs late records events that occurred
earlier, so a past answer can change once late events arrive; and because an event
cannot take effect before the one preceding it in the stream, each event counts from
the latest ``occurred_at`` so far along the stream. ``basis="recorded"`` answers
what the ledger knew at that instant instead (``recorded_at``), which never changes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ledger.domain.common import item_id
from ledger.domain.errors import UnknownItem
from ledger.domain.items import Item
from ledger.eventlog import EventLog, short_topic

Basis = Literal["occurred", "recorded"]
#: Envelope fields every event carries; the rest are the event's own details.
ENVELOPE = ("occurred_at", "library", "recorded_by", "command_id")
_INTERNAL = {"originator_id", "originator_version", "timestamp", "originator_topic"}


@dataclass(frozen=True)
class Entry:
    version: int
    position: int
    event: str  # "Item.Borrowed"
    occurred_at: datetime
    effective_at: datetime  # occurred_at, never earlier than the previous entry's
    recorded_at: datetime
    library: str
    recorded_by: str
    command_id: str
    details: dict[str, Any]
    state: Item  # after this event


@dataclass(frozen=True)
class History:
    item_id: UUID
    owner: str
    barcode: str
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class AsOf:
    """The item at an instant; ``existed`` False is an answer, not an error."""

    owner: str
    barcode: str
    at: datetime
    basis: Basis
    existed: bool
    state: Item | None
    entry: Entry | None  # the last event in force at ``at``
    registered_at: datetime
    message: str


def history(log: EventLog, owner: str, barcode: str) -> History:
    """Every event of the item, oldest first, each with the state after it."""
    aggregate_id = item_id(owner, barcode)
    stream = log.stream(aggregate_id)
    if not stream:
        raise UnknownItem(f"no item {barcode} owned by {owner}", field="barcode")
    entries: list[Entry] = []
    item: Any = None
    effective: datetime | None = None
    for recorded in stream:
        event = recorded.event
        item = event.mutate(item)
        values = vars(event)
        effective = max(event.occurred_at, effective) if effective else event.occurred_at
        entries.append(
            Entry(
                version=event.originator_version,
                position=recorded.position,
                event=short_topic(recorded.topic),
                occurred_at=event.occurred_at,
                effective_at=effective,
                recorded_at=recorded.recorded_at,
                library=event.library,
                recorded_by=event.recorded_by,
                command_id=event.command_id,
                details={
                    k: v for k, v in values.items() if k not in _INTERNAL and k not in ENVELOPE
                },
                state=copy.copy(item),  # apply() replaces values, never mutates them
            )
        )
    return History(aggregate_id, owner, barcode, entries)


def as_of(log: EventLog, owner: str, barcode: str, at: datetime, basis: Basis = "occurred") -> AsOf:
    """The item's state at instant ``at``: after the last event in force then."""
    if at.tzinfo is None:
        from ledger.domain.errors import InvalidInput

        raise InvalidInput("as_of needs a time zone offset", field="as_of")
    full = history(log, owner, barcode)
    in_force = [
        e for e in full.entries if (e.effective_at if basis == "occurred" else e.recorded_at) <= at
    ]
    first = full.entries[0]
    registered = first.occurred_at if basis == "occurred" else first.recorded_at
    if not in_force:
        when = "registered" if basis == "occurred" else "recorded"
        return AsOf(
            owner,
            barcode,
            at,
            basis,
            existed=False,
            state=None,
            entry=None,
            registered_at=registered,
            message=(
                f"item {owner}/{barcode} did not exist yet at {at.isoformat()}: "
                f"it was {when} at {registered.isoformat()}"
            ),
        )
    last = in_force[-1]
    return AsOf(
        owner,
        barcode,
        at,
        basis,
        existed=True,
        state=last.state,
        entry=last,
        registered_at=registered,
        message=f"state after event {last.version} ({last.event})",
    )

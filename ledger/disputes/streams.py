"""Reading streams with what the store adds to each event: recorded_at and position."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic

from ledger.projections.records import decode_state
from ledger.store import EVENTS_TABLE

if TYPE_CHECKING:
    from ledger.application import Circulation

#: Every event class of the disputes module shares this topic prefix; migration 0006
#: indexes exactly these rows, so listing disputes never scans circulation events.
DISPUTE_TOPICS = "ledger.domain.disputes:%"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A decoded event with its place in the log."""

    event: Any
    recorded_at: datetime
    position: int

    @property
    def name(self) -> str:
        return type(self.event).__qualname__


def read_streams(app: Circulation, ids: Iterable[UUID]) -> dict[UUID, list[Recorded]]:
    """The events of some aggregates, oldest first, in one query."""
    ids = list(ids)
    out: dict[UUID, list[Recorded]] = {i: [] for i in ids}
    with app.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state, recorded_at, notification_id"
            f" FROM {EVENTS_TABLE} WHERE originator_id = ANY(%s)"
            " ORDER BY originator_id, originator_version",
            (ids,),
            prepare=True,
        ).fetchall()
    for row in rows:
        out[row["originator_id"]].append(_decode(app, row))
    return out


def read_dispute_events(app: Circulation) -> list[Recorded]:
    """Every event of every dispute and return claim, in log order (an index scan)."""
    with app.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state, recorded_at, notification_id"
            f" FROM {EVENTS_TABLE} WHERE topic LIKE '{DISPUTE_TOPICS}' ORDER BY notification_id"
        ).fetchall()
    return [_decode(app, row) for row in rows]


#: Losses are indexed by migration 0006 (a partial index on exactly this topic).
LOSS_TOPIC = "ledger.domain.items:Item.DeclaredLost"


def read_losses(app: Circulation) -> list[Recorded]:
    """Every ``Item.DeclaredLost``, in log order (an index scan)."""
    with app.datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state, recorded_at, notification_id"
            f" FROM {EVENTS_TABLE} WHERE topic = '{LOSS_TOPIC}' ORDER BY notification_id"
        ).fetchall()
    return [_decode(app, row) for row in rows]


@lru_cache(maxsize=256)
def _event_class(topic: str) -> type:
    return resolve_topic(topic)


def _decode(app: Circulation, row: dict[str, Any]) -> Recorded:
    """The domain event, as eventsourcing's mapper builds it, read by the shared fast
    decoder (``ledger.projections.records``, proven to give the mapper's values). Events
    that need upcasting, or a store with a cipher or compression, take the mapper itself."""
    cls = _event_class(row["topic"])
    mapper = app.mapper
    if getattr(cls, "class_version", 1) != 1 or mapper.cipher or mapper.compressor:
        event = mapper.to_domain_event(
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
        )
    else:
        state = decode_state(row["state"])
        state.pop("class_version", None)
        state["originator_id"] = row["originator_id"]
        state["originator_version"] = row["originator_version"]
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
    return Recorded(event, row["recorded_at"], row["notification_id"])

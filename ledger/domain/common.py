"""What every recorded event carries, and the clock rules around it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from ledger.domain.errors import InvalidInput, OccurredInFuture

#: The consortium's time zone: due dates end at midnight here, reports count days here.
CONSORTIUM_TZ = ZoneInfo("Asia/Shanghai")

#: Desk clocks drift; an event "in the future" by less than this is accepted as now.
CLOCK_SKEW = timedelta(minutes=2)

NAMESPACE = uuid5(NAMESPACE_URL, "https://tongjie.example/ledger")


@lru_cache(maxsize=4096)
def library_id(code: str) -> UUID:
    return uuid5(NAMESPACE, f"library/{code}")


@lru_cache(maxsize=65536)
def item_id(owner: str, barcode: str) -> UUID:
    """Barcodes are unique only inside one library, so the owner is part of the identity."""
    return uuid5(NAMESPACE, f"item/{owner}/{barcode}")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who records a command: a library's desk (``library``) or the administrator."""

    principal: str
    library: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.library is None


@dataclass(frozen=True, slots=True)
class Context:
    """The envelope of one command: when, where, by whom, under which idempotency key."""

    occurred_at: datetime
    library: str
    recorded_by: str
    command_id: str

    def fields(self) -> dict[str, object]:
        return {
            "occurred_at": self.occurred_at,
            "library": self.library,
            "recorded_by": self.recorded_by,
            "command_id": self.command_id,
        }


def check_occurred_at(occurred_at: datetime, now: datetime) -> datetime:
    """Desks may sync late (earlier occurred_at) but never record the future."""
    if occurred_at.tzinfo is None:
        raise InvalidInput(
            "occurred_at needs a time zone offset, e.g. 2026-11-25T09:30:00+08:00",
            field="occurred_at",
        )
    if occurred_at > now + CLOCK_SKEW:
        raise OccurredInFuture(
            f"occurred_at {occurred_at.isoformat()} is in the future "
            f"(ledger time {now.astimezone(CONSORTIUM_TZ).isoformat(timespec='seconds')})",
            field="occurred_at",
        )
    return occurred_at.astimezone(UTC)


class LedgerEvent(Aggregate.Event):
    """Base of every event: the envelope fields, explicit because 9.5 has no metadata."""

    occurred_at: datetime
    library: str
    recorded_by: str
    command_id: str


class LedgerCreated(Aggregate.Created):
    occurred_at: datetime
    library: str
    recorded_by: str
    command_id: str

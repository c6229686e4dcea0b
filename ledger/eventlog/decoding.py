"""Decoding stored events: eventsourcing's JSON read directly, into records or events.

Both ways are proven to give eventsourcing's values (``tests/test_projections_records.py``):
**records** (``Record``: position, stream, short topic and the values as a dict — what a
projection folds, no event object built) and **domain events** (``MAPPER``: eventsourcing's
``Mapper`` with the application's transcodings, building each event as eventsourcing does;
events that need upcasting go through eventsourcing's own code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID, SafeUUID

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic

# ====================================================================== decoding

_new = object.__new__
_set = object.__setattr__


def _uuid(hex_: str) -> UUID:
    """``UUID(hex_)`` without its parsing of other spellings: equal, hashes equal."""
    value = _new(UUID)
    _set(value, "int", int(hex_, 16))
    _set(value, "is_safe", SafeUUID.unknown)
    return value


#: Decoders of the transcodings eventsourcing's Application registers by default.
TRANSCODED = {
    "uuid_hex": _uuid,
    "datetime_iso": datetime.fromisoformat,
    "decimal_str": Decimal,
}


def decode_state(state: bytes | memoryview) -> dict[str, Any]:
    """The event's state as plain values: UUIDs, datetimes and Decimals restored.

    The stored JSON is in the format of eventsourcing's ``JSONTranscoder`` with the
    transcodings the application registers (``uuid_hex``, ``datetime_iso``,
    ``decimal_str``): a transcoded value is a two-key object ``{"_type_": name,
    "_data_": value}``.
    """
    data: dict[str, Any] = orjson.loads(state)
    for key, value in data.items():
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                data[key] = TRANSCODED[value["_type_"]](value["_data_"])
            else:
                data[key] = _value(value)
        elif kind is list:
            data[key] = _value(value)
    return data


def _value(value: Any) -> Any:
    if type(value) is list:
        return [_value(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) == 2 and "_type_" in value and "_data_" in value:
        return TRANSCODED[value["_type_"]](value["_data_"])
    return {k: _value(v) for k, v in value.items()}


def short_topic(topic: str) -> str:
    """``ledger.domain.items:Item.Borrowed`` → ``Item.Borrowed``."""
    return topic.rpartition(":")[2]


@lru_cache(maxsize=256)
def event_class(topic: str) -> type:
    return resolve_topic(topic)


def transcoder() -> JSONTranscoder:
    """The application's transcoder: what ``Application.construct_transcoder`` builds with
    the default infrastructure factory — eventsourcing's JSON transcoder with the
    transcodings ``Application.register_transcodings`` registers (the ledger registers no
    others; ``tests/test_projections_records.py`` checks both)."""
    found = JSONTranscoder()
    found.register(UUIDAsHex())
    found.register(DecimalAsStr())
    found.register(DatetimeAsISO())
    return found


class LedgerMapper(Mapper[UUID]):
    """eventsourcing's mapper, reading the stored JSON with the fast decoder.

    The event is built as eventsourcing builds it (``object.__new__`` and its
    ``__dict__``); it is about three times faster than the transcoder's ``json`` object
    hooks. Upcasting (``class_version`` above 1), a cipher or a compressor take
    eventsourcing's own path.
    """

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.decode(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def decode(self, originator_id: UUID, originator_version: int, topic: str, state: bytes) -> Any:
        """The domain event stored with these columns."""
        cls = event_class(topic)
        if self.cipher or self.compressor or getattr(cls, "class_version", 1) != 1:
            return super().to_domain_event(
                StoredEvent(originator_id, originator_version, topic, bytes(state))
            )
        try:
            values = decode_state(state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic '{topic}', "
                f"originator_id '{originator_id}' and originator_version "
                f"{originator_version}: {error}"
            ) from error
        values.pop("class_version", None)
        values["originator_id"] = originator_id
        values["originator_version"] = originator_version
        event = _new(cls)
        _set(event, "__dict__", values)
        return event


#: The ledger's one mapper: the application's transcoder; no cipher, no compressor (the
#: ledger configures neither: ``ledger.store.eventsourcing_env``).
MAPPER = LedgerMapper(transcoder=transcoder())


def decode(row: Mapping[str, Any]) -> Any:
    """The domain event of a row with ``originator_id``, ``originator_version``, ``topic``
    and ``state`` (as ``events_after`` reads them)."""
    return MAPPER.decode(
        row["originator_id"], row["originator_version"], row["topic"], row["state"]
    )


class Record:
    """One stored event: where it sits in the log and in its stream, and its values."""

    __slots__ = ("data", "originator_id", "position", "recorded_at", "topic", "version")

    def __init__(
        self,
        position: int,
        originator_id: UUID,
        version: int,
        topic: str,
        recorded_at: datetime,
        data: dict[str, Any],
    ) -> None:
        self.position = position
        self.originator_id = originator_id
        self.version = version
        self.topic = topic  # the short name: "Item.Borrowed"
        self.recorded_at = recorded_at
        self.data = data

    def __repr__(self) -> str:
        return f"Record({self.position}, {self.topic}, {self.originator_id}, v{self.version})"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A decoded domain event with what the store adds to it: its place in the log, when
    it was recorded, and the topic it was stored under."""

    event: Any
    recorded_at: datetime
    position: int
    topic: str

    @property
    def name(self) -> str:
        return type(self.event).__qualname__

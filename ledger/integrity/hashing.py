"""The exact bytes each stored event is hashed from, and the three hashes built on them.

The layout is part of the ledger's published contract (README, "Tamper evidence"):
anyone must be able to recompute it from a stored event, so it never changes; a new
layout would get a new version byte.

    leaf data  = 0x01                                   layout version, 1 byte
               ‖ notification_id                        8 bytes, unsigned big-endian
               ‖ originator_id                          16 bytes, the UUID's bytes
               ‖ originator_version                     8 bytes, signed big-endian
               ‖ recorded_at                            8 bytes, signed big-endian:
                                                        microseconds since 1970-01-01 UTC
               ‖ len(topic)  ‖ topic                    4 bytes unsigned big-endian, UTF-8
               ‖ len(state)  ‖ state                    4 bytes unsigned big-endian, raw
    leaf hash  = SHA-256(0x00 ‖ leaf data)              RFC 6962 / RFC 9162 leaf
    node hash  = SHA-256(0x01 ‖ left ‖ right)           RFC 6962 / RFC 9162 interior node
    chain hash = SHA-256(0x02 ‖ previous chain hash ‖ leaf hash), the first event's
                 previous chain hash being 32 zero bytes
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from uuid import UUID

LAYOUT_VERSION = 1
#: The chain's value before the first event: nothing has been recorded yet.
GENESIS = bytes(32)
HASH_SIZE = 32

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HEAD = struct.Struct(">BQ16sqqI")  # version, notification id, uuid, version, time, len(topic)
_LENGTH = struct.Struct(">I")
_LEAF, _NODE, _CHAIN = b"\x00", b"\x01", b"\x02"


@dataclass(frozen=True, slots=True)
class EventFields:
    """What the leaf commits to, as the store holds it."""

    notification_id: int
    originator_id: UUID
    originator_version: int
    recorded_at: datetime
    topic: str
    state: bytes


def microseconds(moment: datetime) -> int:
    """PostgreSQL keeps timestamptz to the microsecond: this integer is exact."""
    return (moment - _EPOCH) // _MICROSECOND


def from_microseconds(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def leaf_data_raw(
    notification_id: int,
    originator_id: bytes,
    originator_version: int,
    recorded_at_us: int,
    topic: bytes,
    state: bytes,
) -> bytes:
    """The leaf data from the stored columns as raw values (the fast path for ``verify``)."""
    return b"".join(
        (
            _HEAD.pack(
                LAYOUT_VERSION,
                notification_id,
                originator_id,
                originator_version,
                recorded_at_us,
                len(topic),
            ),
            topic,
            _LENGTH.pack(len(state)),
            state,
        )
    )


def leaf_data(event: EventFields) -> bytes:
    return leaf_data_raw(
        event.notification_id,
        event.originator_id.bytes,
        event.originator_version,
        microseconds(event.recorded_at),
        event.topic.encode(),
        event.state,
    )


def leaf_hash(data: bytes) -> bytes:
    return sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE + left + right).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return sha256(_CHAIN + previous + leaf).digest()


def event_leaf_hash(event: EventFields) -> bytes:
    return leaf_hash(leaf_data(event))


def parse_leaf_data(data: bytes) -> EventFields:
    """The inverse of ``leaf_data``: used to say *what* differs when a hash does not match."""
    version, nid, uuid_bytes, ov, us, topic_len = _HEAD.unpack_from(data)
    if version != LAYOUT_VERSION:
        raise ValueError(f"unknown leaf layout version {version}")
    offset = _HEAD.size
    topic = data[offset : offset + topic_len].decode()
    offset += topic_len
    (state_len,) = _LENGTH.unpack_from(data, offset)
    offset += _LENGTH.size
    state = data[offset : offset + state_len]
    if offset + state_len != len(data):
        raise ValueError("leaf data has trailing bytes")
    return EventFields(nid, UUID(bytes=uuid_bytes), ov, from_microseconds(us), topic, state)

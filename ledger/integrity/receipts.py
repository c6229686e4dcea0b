"""Receipts: what a library keeps of each command — where its events sit in the tree.

A receipt names the ledger and, per event, its position (notification id), its leaf index
and its leaf hash. With a signed checkpoint and an inclusion proof (``verify-proof``) it
shows, on the library's own machine, that the event is in the history the ledger signed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.integrity.hashing import HASH_SIZE

FORMAT = "tongjie-receipt/1"


class MalformedDocument(ValueError):
    """A receipt, proof or checkpoint file is not what it claims to be."""


@dataclass(frozen=True, slots=True)
class ReceiptEntry:
    position: int  # the event's notification id
    leaf_index: int  # its place in the Merkle tree (dense, 0-based)
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    ledger: str
    events: tuple[ReceiptEntry, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "ledger": self.ledger,
            "events": [
                {"position": e.position, "leaf_index": e.leaf_index, "leaf_hash": e.leaf_hash.hex()}
                for e in self.events
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Receipt:
        """Accepts a receipt, or a whole command response that holds one."""
        if "receipt" in data and isinstance(data["receipt"], Mapping):
            data = data["receipt"]
        if data.get("format") != FORMAT:
            raise MalformedDocument(f"not a receipt: expected format {FORMAT!r}")
        try:
            events = tuple(
                ReceiptEntry(int(e["position"]), int(e["leaf_index"]), hex_hash(e["leaf_hash"]))
                for e in data["events"]
            )
            return cls(str(data["ledger"]), events)
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedDocument(f"malformed receipt: {error}") from None

    def entry(self, position: int | None = None) -> ReceiptEntry:
        """The entry for one event (the only one, when the receipt holds one)."""
        if position is None:
            if len(self.events) != 1:
                raise MalformedDocument(
                    f"the receipt holds {len(self.events)} events: name one by its position"
                )
            return self.events[0]
        for e in self.events:
            if e.position == position:
                return e
        raise MalformedDocument(f"the receipt holds no event at position {position}")


def hex_hash(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("a hash must be a hex string")
    raw = bytes.fromhex(value)
    if len(raw) != HASH_SIZE:
        raise ValueError(f"a hash is {HASH_SIZE} bytes ({2 * HASH_SIZE} hex digits)")
    return raw


def make_receipt(ledger: str | None, leaves: Sequence[Any]) -> Receipt | None:
    """From the writer's leaves (``tables.Leaf``); None when nothing was chained."""
    if ledger is None or not leaves:
        return None
    return Receipt(
        ledger, tuple(ReceiptEntry(x.notification_id, x.leaf_index, x.leaf_hash) for x in leaves)
    )

"""What ``execute`` answers for one command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.integrity.receipts import Receipt


@dataclass(frozen=True, slots=True)
class Result:
    """What a command recorded: its outcome, and where its events sit in the log."""

    command_id: str
    outcome: dict[str, Any]
    notification_ids: tuple[int, ...]
    replayed: bool = False  # True: a retry answered from the command log, nothing recorded
    receipt: Receipt | None = None  # where its events sit in the Merkle tree (ledger.integrity)

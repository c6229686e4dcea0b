"""JSON as the ledger writes it for people and other programs (files, CLI, API bodies)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # UUID, Decimal: their exact text


def to_json(value: Any, *, indent: int | None = 2) -> str:
    """JSON with ISO 8601 times (with offset) and decimals as exact strings."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=_plain)

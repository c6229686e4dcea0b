"""Keyset pagination for the read models: an opaque cursor is the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from ledger.domain.errors import InvalidInput

#: Rows per page when the caller does not say, and the most it may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    position: int  # the lowest tracked position of the projections the page was read from


def encode(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode(cursor: str | None, types: Sequence[Callable[[str], Any]]) -> tuple[Any, ...] | None:
    """The sort key a cursor carries, typed; InvalidInput for anything else."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        return tuple(kind(v) for kind, v in zip(types, values, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this API returned: pass next_cursor unchanged", field="cursor"
        ) from None


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def finish(rows: list[dict[str, Any]], limit: int, key: Sequence[str], position: int) -> Page:
    """Rows were fetched with ``LIMIT limit + 1``: a surplus row means there is more."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode([rows[-1][k] for k in key]) if more and rows else None
    return Page(rows, cursor, position)


TIMESTAMP = datetime.fromisoformat
UUID_ = UUID
TEXT = str


def dict_rows(conn: Any, query: str, params: Any) -> list[dict[str, Any]]:
    """A read model's rows as dicts, the shape pages and the API serve."""
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def check_period(start: date, end: date) -> None:
    """A report or settlement period runs forwards (both days included)."""
    if start > end:
        raise InvalidInput(f"the period starts ({start}) after it ends ({end})", field="from")

"""Links from the names desks use to aggregates, kept beside the event store.

``item_references``: a loan or transfer id → the item it belongs to (a renewal or a
receipt names only the loan or the shipment). ``reader_identities``: the keyed hash of
an identity number → the reader id; outside the event store so that forgetting a person
drops just this link. Rows are written in the save's transaction; the SQL lives here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import Connection, Cursor


def insert_references(curs: Cursor[Any], rows: Sequence[tuple[UUID, str, UUID, str, str]]) -> None:
    if rows:
        curs.execute(
            "INSERT INTO item_references (reference_id, kind, item_id, owner, barcode)"
            " SELECT (r->>0)::uuid, r->>1, (r->>2)::uuid, r->>3, r->>4"
            " FROM jsonb_array_elements(%s::jsonb) AS r",
            (json.dumps(rows, default=str),),
            prepare=True,
        )


def insert_identities(curs: Cursor[Any], rows: Sequence[tuple[str, UUID]]) -> None:
    if rows:
        curs.execute(
            "INSERT INTO reader_identities (identity_hmac, reader_id)"
            " SELECT r->>0, (r->>1)::uuid FROM jsonb_array_elements(%s::jsonb) AS r",
            (json.dumps(rows, default=str),),
            prepare=True,
        )


def drop_identities(curs: Cursor[Any], reader_ids: Sequence[UUID]) -> None:
    if reader_ids:
        curs.execute("DELETE FROM reader_identities WHERE reader_id = ANY(%s)", (list(reader_ids),))


def reader_for_hmac(conn: Connection[Any], identity_hmac: str) -> UUID | None:
    row = conn.execute(
        "SELECT reader_id FROM reader_identities WHERE identity_hmac = %s", (identity_hmac,)
    ).fetchone()
    return row["reader_id"] if row else None


def reference(conn: Connection[Any], reference_id: UUID, kind: str) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT owner, barcode FROM item_references WHERE reference_id = %s AND kind = %s",
        (reference_id, kind),
    ).fetchone()
    return (row["owner"], row["barcode"]) if row else None

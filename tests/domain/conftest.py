"""The domain tier: the writer on its in-memory unit of work, no database at all.

``pytest tests/domain`` runs first in CI and starts no PostgreSQL: the root
conftest starts its server only for a test that asks for ``server_dsn``, and here
that fixture fails instead, so a test that needs the database says it belongs in the
PostgreSQL tier (``tests/``) rather than quietly starting one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ledger.domain.identity import IdentityHasher
from ledger.write import memory_ledger
from tests.helpers import IDENTITY_KEY, join_all

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Writer


@pytest.fixture(scope="session")
def server_dsn() -> str:
    pytest.fail("the domain tier runs without PostgreSQL: move this test to tests/")


def open_writer(*, group_commit: bool = True, loan_limit: int = 5) -> Writer:
    """The writer as the PostgreSQL tier's ``open_ledger`` builds it, kept in memory."""
    return memory_ledger(
        hasher=IdentityHasher(IDENTITY_KEY), loan_limit=loan_limit, group_commit=group_commit
    )


@pytest.fixture(params=["group", "single"])
def writer(request: pytest.FixtureRequest) -> Iterator[Writer]:
    """The writer, both with group commit and committing one command at a time."""
    app = open_writer(group_commit=request.param == "group")
    yield app
    app.close()


@pytest.fixture
def app(writer: Writer) -> Writer:
    """The writer with the four test libraries joined."""
    join_all(writer)
    return writer


@pytest.fixture
def uow(writer: Writer) -> MemoryUnitOfWork:
    """Where the writer keeps what it records: its events and its command log."""
    return writer.uow

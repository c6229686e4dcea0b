"""``Circulation``: the writer on PostgreSQL, opened from settings.

The composition root of the write side: eventsourcing's store with the ledger's
recorder (``ledger.write.postgres``) under the one ``Writer``. Read-side code takes
its connection ``pool``, never the writer.
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from ledger.config import Settings
from ledger.domain.identity import IdentityHasher
from ledger.store import eventsourcing_env, identity_key, migrate, resolve_dsn
from ledger.write import Writer
from ledger.write.postgres import PostgresUnitOfWork


class Circulation(Writer):
    """Records what happens at member libraries' desks; refuses what breaks a rule."""

    uow: PostgresUnitOfWork

    def __init__(
        self,
        env: dict[str, str],
        *,
        hasher: IdentityHasher,
        loan_limit: int = 20,
        group_commit: bool = True,
        cache_size: int = 100_000,
    ) -> None:
        super().__init__(
            PostgresUnitOfWork(env, cache_size=cache_size),
            hasher=hasher,
            loan_limit=loan_limit,
            group_commit=group_commit,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, dsn: str | None = None) -> Circulation:
        """Resolve the database (starting the embedded one if needed), migrate, open."""
        dsn = dsn or resolve_dsn(settings)
        migrate(dsn)
        return cls(
            eventsourcing_env(dsn, pool_size=settings.pool_size),
            hasher=IdentityHasher(identity_key(settings)),
            loan_limit=settings.loan_limit,
            group_commit=settings.group_commit,
        )

    @property
    def pool(self) -> ConnectionPool:
        """The process's connection pool (dict rows), for the read side."""
        return self.uow.pool

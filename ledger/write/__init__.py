"""The write side: the only way events enter the ledger.

Interfaces build command values (``ledger.commands``) and call ``Writer.execute`` or
``Writer.execute_many``. Below the writer: the resolve step, the handlers (one per
command), the unit of work (PostgreSQL or in memory), the aggregate cache, the
idempotency log and the recorder.
"""

from __future__ import annotations

from ledger.domain.identity import IdentityHasher
from ledger.write.memory import MemoryUnitOfWork
from ledger.write.result import Result
from ledger.write.work import UnitOfWork
from ledger.write.writer import Writer


def memory_ledger(
    *, hasher: IdentityHasher, loan_limit: int = 20, group_commit: bool = False
) -> Writer:
    """The writer on the in-memory unit of work (``writer.uow``): rules without a database."""
    return Writer(
        MemoryUnitOfWork(), hasher=hasher, loan_limit=loan_limit, group_commit=group_commit
    )


__all__ = ["MemoryUnitOfWork", "Result", "UnitOfWork", "Writer", "memory_ledger"]

"""Readers: one person each, known to events only by a random id.

The identity number never enters an event; only its masked form does. The link
from the keyed hash of the number to the reader id lives outside the event
store (``reader_identities``), so forgetting a person removes only that link.
The reader keeps the ids of its open loans: the consortium-wide limit is a rule
on this aggregate, so two concurrent borrows by one reader cannot both pass it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.common import LedgerCreated, LedgerEvent
from ledger.domain.errors import ReaderBlocked, ReaderOverLimit, StateConflict


class Reader(Aggregate):
    """State: masked_number, home_library, blocked (reason or None), forgotten,
    open_loans (loan id → item id).
    """

    class Registered(LedgerCreated):
        masked_number: str
        home_library: str

        def apply(self, reader: Reader) -> None:
            reader.masked_number = self.masked_number
            reader.home_library = self.home_library
            reader.blocked = None
            reader.open_loans = {}
            reader.forgotten = False

    class Blocked(LedgerEvent):
        reason: str

        def apply(self, reader: Reader) -> None:
            reader.blocked = self.reason

    class Unblocked(LedgerEvent):
        def apply(self, reader: Reader) -> None:
            reader.blocked = None

    class LoanOpened(LedgerEvent):
        loan_id: UUID
        item_id: UUID

        def apply(self, reader: Reader) -> None:
            reader.open_loans[str(self.loan_id)] = self.item_id

    class LoanClosed(LedgerEvent):
        loan_id: UUID
        how: str  # "returned" | "lost"

        def apply(self, reader: Reader) -> None:
            reader.open_loans.pop(str(self.loan_id), None)

    class Forgotten(LedgerEvent):
        """The link to the person was deleted on request; the history stays, unlinkable."""

        def apply(self, reader: Reader) -> None:
            reader.masked_number = None
            reader.forgotten = True

    @classmethod
    def register(cls, id: UUID, masked_number: str, home_library: str, **envelope: Any) -> Reader:
        return cls._create(
            Reader.Registered,
            id=id,
            masked_number=masked_number,
            home_library=home_library,
            **envelope,
        )

    def check_can_borrow(self, limit: int) -> None:
        if self.forgotten:
            raise ReaderBlocked("this reader record was forgotten on request", field="reader")
        if self.blocked is not None:
            raise ReaderBlocked(f"reader is blocked: {self.blocked}", field="reader")
        if len(self.open_loans) >= limit:
            raise ReaderOverLimit(
                f"reader already has {len(self.open_loans)} open loans; "
                f"the consortium allows {limit}",
                field="reader",
            )

    def open_loan(self, loan_id: UUID, item_id: UUID, limit: int, **envelope: Any) -> None:
        self.check_can_borrow(limit)
        self.trigger_event(Reader.LoanOpened, loan_id=loan_id, item_id=item_id, **envelope)

    def close_loan(self, loan_id: UUID, how: str, **envelope: Any) -> None:
        if str(loan_id) in self.open_loans:
            self.trigger_event(Reader.LoanClosed, loan_id=loan_id, how=how, **envelope)

    def block(self, reason: str, **envelope: Any) -> None:
        if self.blocked is not None:
            raise StateConflict("reader is already blocked", field="reader")
        self.trigger_event(Reader.Blocked, reason=reason, **envelope)

    def unblock(self, **envelope: Any) -> None:
        if self.blocked is None:
            raise StateConflict("reader is not blocked", field="reader")
        self.trigger_event(Reader.Unblocked, **envelope)

    def forget(self, **envelope: Any) -> None:
        if self.forgotten:
            raise StateConflict("reader was already forgotten", field="reader")
        self.trigger_event(Reader.Forgotten, **envelope)

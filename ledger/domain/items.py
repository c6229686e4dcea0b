"""Items: one physical copy each, and every circulation fact about it.

An item is always in exactly one state (``Status``). Each command method checks
every rule first and only then triggers its event, so a broken rule leaves the
aggregate untouched; each event's ``apply`` is the single place its fact changes
state. Events name three libraries separately: ``library`` (acting desk),
``owner``, and ``holding`` — the custodian just before the event (the library
whose shelf, loan desk or dispatch it was in), which fines, compensation and
return routing each need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.common import CONSORTIUM_TZ, LedgerCreated, LedgerEvent
from ledger.domain.errors import (
    InvalidInput,
    ItemInTransit,
    ItemNotAvailable,
    ItemNotInTransit,
    ItemNotLost,
    ItemNotOnLoan,
    ItemWithdrawn,
    LoanClosed,
    NotPermitted,
    RenewalNotAllowed,
    UnknownTransfer,
)
from ledger.domain.libraries import LoanPolicy, ReturnMode


class Status(StrEnum):
    ON_SHELF = "on_shelf"
    ON_LOAN = "on_loan"
    AWAITING_TRANSFER = "awaiting_transfer"  # returned away from home, waiting to be shipped
    IN_TRANSIT = "in_transit"
    LOST = "lost"
    WITHDRAWN = "withdrawn"


class Disposition(StrEnum):
    """What happens to a returned item, decided by the owner's policy."""

    SHELVE = "shelve"  # returned at its owner
    TRANSFER_TO_OWNER = "transfer_to_owner"
    FLOAT = "float"  # stays and circulates at the returning library


class TransferCancelReason(StrEnum):
    PLAN_CHANGED = "plan_changed"
    DISPATCHED_IN_ERROR = "dispatched_in_error"
    OTHER = "other"


#: Fields an ``Item.Corrected`` event may set; everything else is history, fixed.
CORRECTABLE = frozenset({"due_at", "location", "title", "isbn"})


def due_date(start: datetime, days: int) -> datetime:
    """Loans end at the close of the local day, ``days`` days after ``start``."""
    local_day = start.astimezone(CONSORTIUM_TZ).date() + timedelta(days=days)
    return datetime.combine(local_day, time(23, 59, 59), CONSORTIUM_TZ)


@dataclass(frozen=True, slots=True)
class Loan:
    loan_id: UUID
    reader_id: UUID
    library: str
    borrowed_at: datetime
    due_at: datetime
    renewals: int


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: UUID
    from_library: str
    to_library: str
    dispatched_at: datetime
    resumes: Status  # the state a cancellation puts the item back in


class CirculationEvent(LedgerEvent):
    owner: str
    holding: str


class Item(Aggregate):
    """One physical copy.

    State: owner, barcode, title, isbn, status, location (where it physically is or
    last was), loan (open Loan or None), transfer (open Transfer or None),
    destination (where an AWAITING_TRANSFER item must go), since (when status began).
    """

    # ----------------------------------------------------------------- events

    class Registered(LedgerCreated):
        owner: str
        barcode: str
        title: str | None
        isbn: str | None

        def apply(self, item: Item) -> None:
            item.owner = self.owner
            item.barcode = self.barcode
            item.title = self.title
            item.isbn = self.isbn
            item.status = Status.ON_SHELF
            item.location = self.owner
            item.loan = None
            item.transfer = None
            item.destination = None
            item.since = self.occurred_at

    class Borrowed(CirculationEvent):
        loan_id: UUID
        reader_id: UUID
        due_at: datetime

        def apply(self, item: Item) -> None:
            item.status = Status.ON_LOAN
            item.location = self.library
            item.loan = Loan(
                self.loan_id, self.reader_id, self.library, self.occurred_at, self.due_at, 0
            )
            item.destination = None
            item.since = self.occurred_at

    class Renewed(CirculationEvent):
        loan_id: UUID
        due_at: datetime
        renewal: int

        def apply(self, item: Item) -> None:
            assert item.loan is not None
            old = item.loan
            item.loan = Loan(
                old.loan_id, old.reader_id, old.library, old.borrowed_at, self.due_at, self.renewal
            )

    class Returned(CirculationEvent):
        loan_id: UUID
        reader_id: UUID
        borrowed_at_library: str
        disposition: str

        def apply(self, item: Item) -> None:
            item.loan = None
            item.location = self.library
            item.since = self.occurred_at
            if self.disposition == Disposition.TRANSFER_TO_OWNER:
                item.status = Status.AWAITING_TRANSFER
                item.destination = self.owner
            else:
                item.status = Status.ON_SHELF
                item.destination = None

    class TransferDispatched(CirculationEvent):
        transfer_id: UUID
        from_library: str
        to_library: str

        def apply(self, item: Item) -> None:
            resumes = item.status
            item.transfer = Transfer(
                self.transfer_id, self.from_library, self.to_library, self.occurred_at, resumes
            )
            item.status = Status.IN_TRANSIT
            item.destination = None  # the open transfer says where it is going
            item.since = self.occurred_at

    class TransferReceived(CirculationEvent):
        transfer_id: UUID
        from_library: str

        def apply(self, item: Item) -> None:
            item.transfer = None
            item.status = Status.ON_SHELF
            item.location = self.library
            item.destination = None
            item.since = self.occurred_at

    class TransferCancelled(CirculationEvent):
        transfer_id: UUID
        reason: str
        note: str

        def apply(self, item: Item) -> None:
            assert item.transfer is not None
            item.status = item.transfer.resumes
            item.location = item.transfer.from_library
            item.destination = item.owner if item.status is Status.AWAITING_TRANSFER else None
            item.transfer = None
            item.since = self.occurred_at

    class ReceivedUnannounced(CirculationEvent):
        """It arrived with no dispatch to this library on record."""

        superseded_transfer_id: UUID | None
        previous_status: str
        note: str

        def apply(self, item: Item) -> None:
            item.transfer = None
            item.status = Status.ON_SHELF
            item.location = self.library
            item.destination = None
            item.since = self.occurred_at

    class DeclaredLost(CirculationEvent):
        reason: str
        loan_id: UUID | None
        reader_id: UUID | None
        transfer_id: UUID | None

        def apply(self, item: Item) -> None:
            item.status = Status.LOST
            item.loan = None
            item.transfer = None
            item.destination = None
            item.since = self.occurred_at

    class Found(CirculationEvent):
        def apply(self, item: Item) -> None:
            item.status = Status.ON_SHELF
            item.location = self.library
            item.since = self.occurred_at

    class Withdrawn(CirculationEvent):
        reason: str

        def apply(self, item: Item) -> None:
            item.status = Status.WITHDRAWN
            item.since = self.occurred_at

    class Corrected(CirculationEvent):
        """A compensating event: it names the event it corrects and the fields it sets."""

        corrects_version: int
        reason: str
        changes: dict[str, Any]

        def apply(self, item: Item) -> None:
            for name, value in self.changes.items():
                if name == "due_at":
                    assert item.loan is not None
                    old = item.loan
                    item.loan = Loan(
                        old.loan_id,
                        old.reader_id,
                        old.library,
                        old.borrowed_at,
                        datetime.fromisoformat(value),
                        old.renewals,
                    )
                else:
                    setattr(item, name, value)

    # --------------------------------------------------------------- commands

    @classmethod
    def register(
        cls, id: UUID, owner: str, barcode: str, title: str | None, isbn: str | None, **envelope
    ) -> Item:
        return cls._create(
            Item.Registered, id=id, owner=owner, barcode=barcode, title=title, isbn=isbn, **envelope
        )

    def _circulation(self) -> dict[str, str]:
        return {"owner": self.owner, "holding": self.custodian}

    @property
    def custodian(self) -> str:
        """The library responsible for the item right now."""
        if self.status is Status.ON_LOAN and self.loan is not None:
            return self.loan.library
        if self.status is Status.IN_TRANSIT and self.transfer is not None:
            return self.transfer.from_library
        return self.location

    def borrow(
        self, loan_id: UUID, reader_id: UUID, policy: LoanPolicy, **envelope: Any
    ) -> datetime:
        library = envelope["library"]
        self._require_on_shelf_at(library, doing="borrowed")
        due_at = due_date(envelope["occurred_at"], policy.loan_days)
        self.trigger_event(
            Item.Borrowed,
            loan_id=loan_id,
            reader_id=reader_id,
            due_at=due_at,
            **self._circulation(),
            **envelope,
        )
        return due_at

    def renew(
        self,
        loan_id: UUID,
        policy: LoanPolicy,
        *,
        reader_home: str | None,
        as_admin: bool = False,
        **envelope: Any,
    ) -> datetime:
        """``reader_home``: the borrowing reader's home library (None: unknown). Only the
        lending library, the owner or the reader's home library renews a loan."""
        loan = self._require_loan(loan_id)
        if not as_admin:
            may = {loan.library, self.owner} | ({reader_home} if reader_home else set())
            if envelope["library"] not in may:
                raise NotPermitted(
                    f"{envelope['library']} is neither the lending library {loan.library}, "
                    f"the owner {self.owner} nor the reader's home library: it cannot renew "
                    f"loan {loan_id}",
                    field="library",
                )
        if loan.renewals >= policy.renewals_allowed:
            raise RenewalNotAllowed(
                f"loan already renewed {loan.renewals} time(s); the lending library "
                f"allows {policy.renewals_allowed}",
                field="loan_id",
            )
        due_at = max(loan.due_at, due_date(envelope["occurred_at"], policy.renewal_days))
        self.trigger_event(
            Item.Renewed,
            loan_id=loan_id,
            due_at=due_at,
            renewal=loan.renewals + 1,
            **self._circulation(),
            **envelope,
        )
        return due_at

    def return_(self, owner_policy: LoanPolicy, **envelope: Any) -> tuple[Loan, Disposition]:
        if self.status is not Status.ON_LOAN or self.loan is None:
            raise ItemNotOnLoan(self._describe("is not on loan"), field="barcode")
        library = envelope["library"]
        if library == self.owner:
            disposition = Disposition.SHELVE
        elif owner_policy.return_mode is ReturnMode.FLOAT:
            disposition = Disposition.FLOAT
        else:
            disposition = Disposition.TRANSFER_TO_OWNER
        loan = self.loan
        self.trigger_event(
            Item.Returned,
            loan_id=loan.loan_id,
            reader_id=loan.reader_id,
            borrowed_at_library=loan.library,
            disposition=str(disposition),
            **self._circulation(),
            **envelope,
        )
        return loan, disposition

    def dispatch(self, transfer_id: UUID, to_library: str, **envelope: Any) -> None:
        from_library = envelope["library"]
        if to_library == from_library:
            raise InvalidInput("a transfer must go to another library", field="to_library")
        if self.status not in (Status.ON_SHELF, Status.AWAITING_TRANSFER):
            self._refuse(doing="dispatched")
        if self.location != from_library:
            raise ItemNotAvailable(
                self._describe(f"is at {self.location}, not at {from_library}"), field="barcode"
            )
        self.trigger_event(
            Item.TransferDispatched,
            transfer_id=transfer_id,
            from_library=from_library,
            to_library=to_library,
            **self._circulation(),
            **envelope,
        )

    def receive(self, transfer_id: UUID, **envelope: Any) -> None:
        transfer = self._require_transfer(transfer_id)
        if envelope["library"] != transfer.to_library:
            raise NotPermitted(
                f"transfer {transfer_id} goes to {transfer.to_library}; "
                f"{envelope['library']} cannot receive it",
                field="library",
            )
        self.trigger_event(
            Item.TransferReceived,
            transfer_id=transfer_id,
            from_library=transfer.from_library,
            **self._circulation(),
            **envelope,
        )

    def cancel_transfer(self, transfer_id: UUID, reason: str, note: str, **envelope: Any) -> None:
        transfer = self._require_transfer(transfer_id)
        if envelope["library"] not in (transfer.from_library, transfer.to_library):
            raise NotPermitted(
                f"only {transfer.from_library} or {transfer.to_library} can cancel this transfer",
                field="library",
            )
        self.trigger_event(
            Item.TransferCancelled,
            transfer_id=transfer_id,
            reason=str(TransferCancelReason(reason)),
            note=note,
            **self._circulation(),
            **envelope,
        )

    def receive_unannounced(self, note: str, **envelope: Any) -> None:
        """Only a missing item can turn up unannounced: one in transit (to another
        library: a shipment to this one is received), waiting to go home, or lost."""
        library = envelope["library"]
        if self.status is Status.WITHDRAWN:
            raise ItemWithdrawn(self._describe("was withdrawn"), field="barcode")
        if self.status is Status.ON_LOAN:
            raise ItemNotAvailable(
                self._describe("is on loan: record a return, not a receipt"), field="barcode"
            )
        if self.status is Status.IN_TRANSIT and self.transfer is not None:
            if self.transfer.to_library == library:
                raise ItemInTransit(
                    self._describe(
                        f"is in transit to {library} under transfer "
                        f"{self.transfer.transfer_id}: receive that transfer"
                    ),
                    field="barcode",
                )
        elif self.status is Status.ON_SHELF and self.location == library:
            raise ItemNotAvailable(self._describe(f"is already on shelf at {library}"))
        elif self.status is Status.ON_SHELF:
            # Only a missing item can turn up: one in transit, waiting to go home, or lost.
            raise ItemNotAvailable(
                self._describe(
                    f"is on shelf at {self.location}, not missing: it cannot arrive at "
                    f"{library} unannounced (ship it with a transfer, or correct its location)"
                ),
                field="barcode",
            )
        self.trigger_event(
            Item.ReceivedUnannounced,
            superseded_transfer_id=self.transfer.transfer_id if self.transfer else None,
            previous_status=str(self.status),
            note=note,
            **self._circulation(),
            **envelope,
        )

    def declare_lost(self, reason: str, *, as_admin: bool = False, **envelope: Any) -> Loan | None:
        if self.status in (Status.LOST, Status.WITHDRAWN):
            self._refuse(doing="declared lost")
        if not as_admin:
            self._require_involved(envelope["library"], doing="declare it lost")
        loan = self.loan if self.status is Status.ON_LOAN else None
        self.trigger_event(
            Item.DeclaredLost,
            reason=reason,
            loan_id=loan.loan_id if loan else None,
            reader_id=loan.reader_id if loan else None,
            transfer_id=self.transfer.transfer_id if self.transfer else None,
            **self._circulation(),
            **envelope,
        )
        return loan

    def found(self, **envelope: Any) -> None:
        if self.status is not Status.LOST:
            raise ItemNotLost(self._describe("is not lost"), field="barcode")
        self.trigger_event(Item.Found, **self._circulation(), **envelope)

    def withdraw(self, reason: str, **envelope: Any) -> None:
        if envelope["library"] != self.owner:
            raise NotPermitted(f"only the owner {self.owner} can withdraw it", field="library")
        if not (
            self.status is Status.LOST
            or (self.status is Status.ON_SHELF and self.location == self.owner)
        ):
            self._refuse(doing="withdrawn (it must be lost, or on shelf at its owner)")
        self.trigger_event(Item.Withdrawn, reason=reason, **self._circulation(), **envelope)

    def correct(
        self,
        corrects_version: int,
        reason: str,
        changes: dict[str, Any],
        *,
        as_admin: bool = False,
        **envelope: Any,
    ) -> None:
        if not 1 <= corrects_version <= self.version:
            raise InvalidInput(
                f"event {corrects_version} does not exist: the item has {self.version} events",
                field="corrects_version",
            )
        if not changes or not set(changes) <= CORRECTABLE:
            raise InvalidInput(
                f"a correction sets some of: {', '.join(sorted(CORRECTABLE))}", field="changes"
            )
        if not reason.strip():
            raise InvalidInput("a correction needs a reason", field="reason")
        if not as_admin:
            self._require_involved(envelope["library"], doing="correct it")
        if "due_at" in changes:
            if self.loan is None:
                raise ItemNotOnLoan(self._describe("has no loan whose due date could be corrected"))
            changes = {**changes, "due_at": _aware(changes["due_at"]).isoformat()}
        if "location" in changes and self.status not in (
            Status.ON_SHELF,
            Status.AWAITING_TRANSFER,
        ):
            self._refuse(doing="relocated (only shelved items can have their location corrected)")
        self.trigger_event(
            Item.Corrected,
            corrects_version=corrects_version,
            reason=reason,
            changes=changes,
            **self._circulation(),
            **envelope,
        )

    # ---------------------------------------------------------------- checks

    def _describe(self, what: str) -> str:
        return f"item {self.owner}/{self.barcode} {what}"

    def _refuse(self, *, doing: str) -> None:
        where = {
            Status.ON_LOAN: "is on loan",
            Status.IN_TRANSIT: "is in transit",
            Status.LOST: "is lost",
            Status.WITHDRAWN: "was withdrawn",
            Status.AWAITING_TRANSFER: f"is waiting at {self.location} to go home",
            Status.ON_SHELF: f"is on shelf at {self.location}",
        }[self.status]
        error = {
            Status.IN_TRANSIT: ItemInTransit,
            Status.WITHDRAWN: ItemWithdrawn,
        }.get(self.status, ItemNotAvailable)
        raise error(self._describe(f"{where}; it cannot be {doing}"), field="barcode")

    def _require_on_shelf_at(self, library: str, *, doing: str) -> None:
        if self.status is not Status.ON_SHELF:
            self._refuse(doing=doing)
        if self.location != library:
            raise ItemNotAvailable(
                self._describe(f"is on shelf at {self.location}, not at {library}"),
                field="barcode",
            )

    def _require_loan(self, loan_id: UUID) -> Loan:
        if self.loan is None or self.loan.loan_id != loan_id:
            # The loan was found among this item's loans, so it is not unknown: it ended.
            raise LoanClosed(
                self._describe(f"was returned or declared lost since loan {loan_id}"),
                field="loan_id",
            )
        return self.loan

    def _require_transfer(self, transfer_id: UUID) -> Transfer:
        if self.transfer is None or self.transfer.transfer_id != transfer_id:
            if self.status is not Status.IN_TRANSIT:
                raise ItemNotInTransit(
                    self._describe(f"is not in transit under transfer {transfer_id}"),
                    field="transfer_id",
                )
            raise UnknownTransfer(f"transfer {transfer_id} is not open", field="transfer_id")
        return self.transfer

    def _require_involved(self, library: str, *, doing: str) -> None:
        involved = {self.owner, self.location, self.custodian}
        if self.transfer is not None:
            involved |= {self.transfer.from_library, self.transfer.to_library}
        if library not in involved:
            raise NotPermitted(
                f"{library} neither owns nor holds {self.owner}/{self.barcode}; it cannot {doing}",
                field="library",
            )


def _aware(value: datetime | str) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise InvalidInput("due_at needs a time zone offset", field="changes.due_at")
    return parsed

"""Disputes between libraries about one item, and readers' claims to have returned one.

A ``Dispute`` is a case file: opened by a library about one item against another
library, it collects statements and attachments (by reference: URI, SHA-256 and a
description, never the file) from the two parties, and ends with the
administrator's resolution (the liable library, compensation in CNY as a decimal
string, free text) or the opener's withdrawal. Nothing in it is ever edited: a
changed statement is a new statement.

A ``ReturnClaim`` records that a reader says an item still on loan was returned, at
a named library. It does not change the item (the loan stays open, the item's state
is what the desks recorded); when the loan is still open some days later, the
dispute sweep opens a *claimed returned* dispute between the libraries concerned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain.common import NAMESPACE, LedgerCreated, LedgerEvent
from ledger.domain.errors import (
    AdministratorOnly,
    DisputeClosed,
    InvalidInput,
    NotADisputeParty,
    NotPermitted,
)


class DisputeKind(StrEnum):
    CLAIMED_RETURNED = "claimed_returned"  # the reader says it was returned at the other's desk
    LOST_IN_TRANSIT = "lost_in_transit"  # shipped and never seen again
    NOT_RECEIVED = "not_received"  # "we sent it" / "it never arrived"
    DAMAGED = "damaged"  # it came back damaged
    OTHER = "other"


class DisputeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    WITHDRAWN = "withdrawn"


#: Compensation is money: at most this many places after the point (fen), never a float.
CNY_PLACES = 2
#: A sanity ceiling, not a policy: no single book is worth more than this many yuan.
MAX_COMPENSATION = Decimal("1000000")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: An attachment is a link a librarian opens from the evidence page: ``https:`` only, with a
#: host (no credentials) and no spaces, control characters or unpaired surrogates. Any other
#: scheme (``javascript:``, ``data:``, ``file:``, plain ``http:``) is refused.
_URI_CHAR = r"[^\s\x00-\x1f\x7f\ud800-\udfff]"
ATTACHMENT_URI = re.compile(
    rf"https://(?:(?![/?#@\\]){_URI_CHAR})+(?:[/?#]{_URI_CHAR}*)?", re.IGNORECASE
)
#: Statements are a paragraph or two; evidence goes in attachments.
MAX_TEXT = 4000


def parse_cny(value: str | Decimal | int) -> Decimal:
    """A compensation amount: a decimal string like ``"85.50"``; floats are refused."""
    if isinstance(value, float):
        raise InvalidInput("compensation is a decimal string like '85.50', not a float")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(
            f"{value!r} is not an amount in yuan like '85.50'", field="compensation"
        ) from None
    if not amount.is_finite() or amount < 0 or amount > MAX_COMPENSATION:
        raise InvalidInput(
            f"compensation must be between 0 and {MAX_COMPENSATION} yuan", field="compensation"
        )
    if -amount.as_tuple().exponent > CNY_PLACES:  # type: ignore[operator]
        raise InvalidInput("compensation has at most two places after the point (fen)")
    return amount.quantize(Decimal(1).scaleb(-CNY_PLACES))


def check_text(text: str, field: str, *, required: bool = True) -> str:
    text = text.strip()
    if required and not text:
        raise InvalidInput(f"{field} cannot be empty", field=field)
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{field} is longer than {MAX_TEXT} characters", field=field)
    return text


def automatic_dispute_id(trigger: str) -> UUID:
    """The sweep's disputes have ids derived from what triggered them, so that however
    often (and however concurrently) the sweep runs, each trigger opens one dispute."""
    return uuid5(NAMESPACE, f"dispute/{trigger}")


#: The fields of item events that name a library (the desk, owner, holder, shipment ends).
LIBRARY_FIELDS = (
    "library",
    "owner",
    "holding",
    "from_library",
    "to_library",
    "borrowed_at_library",
)


def libraries_named(item_events: Iterable[Any], claim_events: Iterable[Any] = ()) -> frozenset[str]:
    """Every library an item's history names — the parties a dispute about it may have —
    and the libraries where readers say they returned it (a claim names a party too)."""
    found: set[str] = set()
    for event in item_events:
        state = vars(event)
        found.update(v for name in LIBRARY_FIELDS if isinstance(v := state.get(name), str))
        changes = state.get("changes")
        if isinstance(changes, dict) and isinstance(changes.get("location"), str):
            found.add(changes["location"])
    for event in claim_events:
        found |= {event.library, event.returned_at}
    return frozenset(found)


def return_claim_id(loan_id: UUID) -> UUID:
    """One claim per loan: a reader repeating the claim adds nothing new."""
    return uuid5(NAMESPACE, f"return-claim/{loan_id}")


@dataclass(frozen=True, slots=True)
class Statement:
    library: str
    recorded_by: str
    occurred_at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Attachment:
    library: str
    recorded_by: str
    occurred_at: datetime
    uri: str
    sha256: str
    description: str


@dataclass(frozen=True, slots=True)
class Resolution:
    liable_library: str | None
    compensation_cny: Decimal
    text: str
    recorded_by: str
    occurred_at: datetime


class Dispute(Aggregate):
    """State: item_id, owner, barcode, kind, opened_by, other_party, opened_at, trigger,
    reference_id, status, statements, attachments, resolution, closed_reason."""

    class Opened(LedgerCreated):
        item_id: UUID
        owner: str
        barcode: str
        kind: str
        other_party: str
        statement: str
        trigger: str | None  # what opened it automatically (None: a library did)
        reference_id: UUID | None  # the loan or transfer it is about, when one is

        def apply(self, dispute: Dispute) -> None:
            dispute.item_id = self.item_id
            dispute.owner = self.owner
            dispute.barcode = self.barcode
            dispute.kind = DisputeKind(self.kind)
            dispute.opened_by = self.library
            dispute.other_party = self.other_party
            dispute.opened_at = self.occurred_at
            dispute.trigger = self.trigger
            dispute.reference_id = self.reference_id
            dispute.status = DisputeStatus.OPEN
            dispute.statements = [
                Statement(self.library, self.recorded_by, self.occurred_at, self.statement)
            ]
            dispute.attachments = []
            dispute.resolution = None
            dispute.closed_reason = None

    class StatementAdded(LedgerEvent):
        text: str

        def apply(self, dispute: Dispute) -> None:
            dispute.statements.append(
                Statement(self.library, self.recorded_by, self.occurred_at, self.text)
            )

    class AttachmentAdded(LedgerEvent):
        uri: str
        sha256: str
        description: str

        def apply(self, dispute: Dispute) -> None:
            dispute.attachments.append(
                Attachment(
                    self.library,
                    self.recorded_by,
                    self.occurred_at,
                    self.uri,
                    self.sha256,
                    self.description,
                )
            )

    class Resolved(LedgerEvent):
        liable_library: str | None  # None: nobody is liable (found, fair wear, no fault)
        compensation_cny: str  # a decimal string, e.g. "85.50": money is never a float
        text: str

        def apply(self, dispute: Dispute) -> None:
            dispute.status = DisputeStatus.RESOLVED
            dispute.resolution = Resolution(
                self.liable_library,
                Decimal(self.compensation_cny),
                self.text,
                self.recorded_by,
                self.occurred_at,
            )

    class Withdrawn(LedgerEvent):
        reason: str

        def apply(self, dispute: Dispute) -> None:
            dispute.status = DisputeStatus.WITHDRAWN
            dispute.closed_reason = self.reason

    # --------------------------------------------------------------- commands

    @classmethod
    def open(
        cls,
        id: UUID,
        *,
        item_id: UUID,
        owner: str,
        barcode: str,
        kind: str,
        other_party: str,
        statement: str,
        involved: frozenset[str],
        trigger: str | None = None,
        reference_id: UUID | None = None,
        **envelope: Any,
    ) -> Dispute:
        """``involved``: every library the item's history names. Both parties must be in it."""
        try:
            kind = str(DisputeKind(kind))
        except ValueError:
            known = ", ".join(k.value for k in DisputeKind)
            raise InvalidInput(
                f"unknown dispute kind {kind!r}: one of {known}", field="kind"
            ) from None
        opener = envelope["library"]
        if other_party == opener:
            raise InvalidInput("a dispute is between two libraries", field="other_party")
        for library, field in ((opener, "library"), (other_party, "other_party")):
            if library not in involved:
                raise NotADisputeParty(
                    f"{library} never owned, held, lent, returned or shipped "
                    f"{owner}/{barcode}: it is not a party to a dispute about it",
                    field=field,
                )
        return cls._create(
            Dispute.Opened,
            id=id,
            item_id=item_id,
            owner=owner,
            barcode=barcode,
            kind=kind,
            other_party=other_party,
            statement=check_text(statement, "statement"),
            trigger=trigger,
            reference_id=reference_id,
            **envelope,
        )

    @property
    def parties(self) -> tuple[str, str]:
        return (self.opened_by, self.other_party)

    def add_statement(self, text: str, **envelope: Any) -> None:
        self._require_open()
        self._require_party(envelope["library"], doing="add a statement")
        self.trigger_event(Dispute.StatementAdded, text=check_text(text, "text"), **envelope)

    def add_attachment(self, uri: str, sha256: str, description: str, **envelope: Any) -> None:
        self._require_open()
        self._require_party(envelope["library"], doing="attach evidence")
        uri = uri.strip()
        if not ATTACHMENT_URI.fullmatch(uri):
            raise InvalidInput("an attachment is an https:// link to the file", field="uri")
        sha256 = sha256.strip().lower()
        if not SHA256.match(sha256):
            raise InvalidInput("sha256 is 64 hexadecimal characters", field="sha256")
        self.trigger_event(
            Dispute.AttachmentAdded,
            uri=uri,
            sha256=sha256,
            description=check_text(description, "description", required=False),
            **envelope,
        )

    def resolve(
        self,
        liable_library: str | None,
        compensation: str | Decimal,
        text: str,
        *,
        as_admin: bool,
        **envelope: Any,
    ) -> None:
        if not as_admin:
            raise AdministratorOnly(
                "only the consortium administrator resolves a dispute", field="library"
            )
        self._require_open()
        if liable_library is not None and liable_library not in self.parties:
            raise InvalidInput(
                f"the liable library is one of the parties ({' or '.join(self.parties)}) or none",
                field="liable_library",
            )
        amount = parse_cny(compensation)
        if liable_library is None and amount:
            raise InvalidInput("compensation needs a liable library", field="compensation")
        self.trigger_event(
            Dispute.Resolved,
            liable_library=liable_library,
            compensation_cny=str(amount),
            text=check_text(text, "text"),
            **envelope,
        )

    def withdraw(self, reason: str, *, as_admin: bool, **envelope: Any) -> None:
        self._require_open()
        if not as_admin and envelope["library"] != self.opened_by:
            raise NotADisputeParty(
                f"only {self.opened_by}, which opened the dispute, can withdraw it",
                field="library",
            )
        self.trigger_event(Dispute.Withdrawn, reason=check_text(reason, "reason"), **envelope)

    def _require_open(self) -> None:
        if self.status is not DisputeStatus.OPEN:
            raise DisputeClosed(f"dispute {self.id} is {self.status}", field="dispute_id")

    def _require_party(self, library: str, *, doing: str) -> None:
        if library not in self.parties:
            raise NotADisputeParty(
                f"{library} is not a party to dispute {self.id} "
                f"({' and '.join(self.parties)}); it cannot {doing}",
                field="library",
            )


class ReturnClaim(Aggregate):
    """A reader says the item on loan ``loan_id`` was returned at ``returned_at``."""

    class Recorded(LedgerCreated):
        item_id: UUID
        owner: str
        barcode: str
        loan_id: UUID
        lending_library: str
        returned_at: str  # the library where the reader says it was returned
        claimed_on: str | None  # the day the reader names, ISO date, if they name one
        statement: str

        def apply(self, claim: ReturnClaim) -> None:
            claim.item_id = self.item_id
            claim.owner = self.owner
            claim.barcode = self.barcode
            claim.loan_id = self.loan_id
            claim.lending_library = self.lending_library
            claim.returned_at = self.returned_at
            claim.claimed_on = self.claimed_on
            claim.recorded_at_desk = self.library
            claim.occurred_at = self.occurred_at

    @classmethod
    def record(
        cls,
        *,
        item_id: UUID,
        owner: str,
        barcode: str,
        loan_id: UUID,
        lending_library: str,
        returned_at: str,
        claimed_on: str | None,
        statement: str,
        as_admin: bool = False,
        **envelope: Any,
    ) -> ReturnClaim:
        """Recorded by a library concerned: the lender, the owner or the library the reader
        names (or the administrator). One claim per loan, so a desk with nothing to do
        with the loan must not take that place and later set two others arguing."""
        desk = envelope["library"]
        if not as_admin and desk not in (lending_library, owner, returned_at):
            raise NotPermitted(
                f"{desk} is neither the lending library {lending_library}, the owner {owner} "
                f"nor the library where the reader says it was returned ({returned_at}): "
                f"it cannot record this claim",
                field="library",
            )
        return cls._create(
            ReturnClaim.Recorded,
            id=return_claim_id(loan_id),
            item_id=item_id,
            owner=owner,
            barcode=barcode,
            loan_id=loan_id,
            lending_library=lending_library,
            returned_at=returned_at,
            claimed_on=claimed_on,
            statement=check_text(statement, "statement", required=False),
            **envelope,
        )

    def parties(self) -> tuple[str, str] | None:
        """Who argues when the loan stays open: the lender and the library the reader named;
        if the reader named the lender itself, the lender and the owner; else nobody."""
        if self.returned_at != self.lending_library:
            return (self.lending_library, self.returned_at)
        if self.owner != self.lending_library:
            return (self.lending_library, self.owner)
        return None

"""Commands: what a desk, kiosk or batch asks the ledger to record, as plain values.

Every interface (HTTP, CLI, and later SIP2 and batch imports) builds these and hands
them to ``execute``/``execute_many`` (``ledger.write``). A command names things the way
the desk does — a reader by card, a loan by its id — and the writer's resolve step
(``ledger.write.resolve``) fills in what needs a look-up before the rules run.

A command knows which aggregates it needs (so a batch can load them all in one
query) and how to fingerprint itself (so a retried idempotency key can be told
apart from a reused one). The rules live in the domain; ``ledger.write.handlers``
applies a command to its aggregates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from ledger.domain.common import Actor, item_id, library_id
from ledger.domain.disputes import return_claim_id

#: Field metadata of what the caller may give and the resolve step replaces (a card → a
#: reader id): not part of what a retry must repeat (the resolved fields are).
RESOLVED = {"fingerprint": False}


@dataclass(frozen=True, slots=True)
class ReaderCard:
    """The card a reader shows: a resident identity card or a social security card.

    Both carry the same 18-character number, so both reach the same reader. The number
    lives only in memory, on its way to the keyed hash: never in a repr or a log line.
    """

    number: str = field(repr=False)
    document: str = "resident_id"


@dataclass(frozen=True, kw_only=True)
class Command:
    command: ClassVar[str]  # the name stored in command_log.command
    actor: Actor
    library: str  # the desk where it happened
    occurred_at: datetime | None = None  # None: now
    command_id: str | None = None  # None: a fresh one (not retry-safe)
    generated_id: bool = False  # the ledger made the command_id up: no retry can carry it
    digest: str = ""  # the fingerprint of the command as the caller sent it (see fingerprint)

    def aggregate_ids(self) -> set[UUID]:
        return {library_id(self.library)}

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        """Ids known only once the first aggregates are loaded (a loan's reader)."""
        return set()

    def fingerprint(self) -> str:
        """What a retry must repeat: everything the caller sent but the key itself.

        Taken before defaults are filled in, so a retried "occurred now" command (no
        occurred_at) matches its first attempt.
        """
        if self.digest:
            return self.digest
        skip = ("actor", "command_id", "generated_id", "digest")
        payload = {
            f.metadata.get("fingerprint_as", f.name): getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and f.metadata.get("fingerprint", True)
        }
        payload["command"] = self.command
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ItemCommand(Command):
    owner: str
    barcode: str

    @property
    def item_id(self) -> UUID:
        return item_id(self.owner, self.barcode)

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.item_id, library_id(self.owner)}


@dataclass(frozen=True, kw_only=True)
class JoinLibrary(Command):
    command = "join_library"
    library: str = ""  # the joining library itself (its code)
    code: str
    # Fingerprinted under its first name, so keys stored before the rename still replay.
    name: str = field(metadata={"fingerprint_as": "library_name"})
    region: str
    level: str
    policy: dict[str, Any] = field(default_factory=dict)
    can_circulate: bool = True

    def __post_init__(self) -> None:
        if not self.library:
            object.__setattr__(self, "library", self.code)


@dataclass(frozen=True, kw_only=True)
class ChangePolicy(Command):
    command = "change_policy"
    policy: dict[str, Any]
    can_circulate: bool = True


@dataclass(frozen=True, kw_only=True)
class RegisterItem(ItemCommand):
    command = "register_item"
    library: str = ""  # the owner's desk
    title: str | None = None
    isbn: str | None = None

    def __post_init__(self) -> None:
        if not self.library:
            object.__setattr__(self, "library", self.owner)


@dataclass(frozen=True, kw_only=True)
class RegisterReader(Command):
    """Register the person whose card is shown, at ``library`` (their home library).

    The resolve step turns the card into the keyed hash and masked form, and finds the
    reader if the person is registered already (``known``: nothing is recorded then).
    """

    command = "register_reader"
    document: str = field(default="resident_id", metadata=RESOLVED)
    number: str = field(default="", repr=False, metadata=RESOLVED)
    identity_hmac: str = field(default="", repr=False)
    masked_number: str = ""
    reader_id: UUID | None = None
    known: bool = field(default=False, metadata=RESOLVED)

    def fingerprint(self) -> str:
        # The reader id is chosen at execution; the person is what the retry repeats.
        if self.digest:
            return self.digest
        payload = f"{self.command}|{self.identity_hmac}|{self.library}|{self.occurred_at}"
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ReaderCommand(Command):
    reader_id: UUID

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.reader_id}


@dataclass(frozen=True, kw_only=True)
class BlockReader(ReaderCommand):
    command = "block_reader"
    reason: str


@dataclass(frozen=True, kw_only=True)
class UnblockReader(ReaderCommand):
    command = "unblock_reader"


@dataclass(frozen=True, kw_only=True)
class ForgetReader(ReaderCommand):
    """Honour a deletion request: drop the identity link, record that it was dropped."""

    command = "forget_reader"
    reader_id: UUID | None = None  # type: ignore[assignment]  # resolved from the card
    reader: ReaderCard | None = field(default=None, metadata=RESOLVED)

    def aggregate_ids(self) -> set[UUID]:
        return Command.aggregate_ids(self) | ({self.reader_id} if self.reader_id else set())


@dataclass(frozen=True, kw_only=True)
class Borrow(ItemCommand):
    """Lend the item at ``library`` to the reader named by id or by the card shown."""

    command = "borrow"
    reader_id: UUID | None = None
    reader: ReaderCard | None = field(default=None, metadata=RESOLVED)

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | ({self.reader_id} if self.reader_id else set())


@dataclass(frozen=True, kw_only=True)
class Renew(ItemCommand):
    command = "renew"
    loan_id: UUID
    owner: str = ""  # resolved from the loan id
    barcode: str = ""

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        return _loan_reader(loaded, self.item_id)  # its home library may renew


@dataclass(frozen=True, kw_only=True)
class Return(ItemCommand):
    command = "return"

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        return _loan_reader(loaded, self.item_id)


@dataclass(frozen=True, kw_only=True)
class Dispatch(ItemCommand):
    """Ship the item from ``library`` (the desk holding it) to ``to_library``."""

    command = "dispatch"
    to_library: str

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {library_id(self.to_library)}


@dataclass(frozen=True, kw_only=True)
class Receive(ItemCommand):
    command = "receive"
    transfer_id: UUID
    owner: str = ""  # resolved from the transfer id
    barcode: str = ""


@dataclass(frozen=True, kw_only=True)
class CancelTransfer(ItemCommand):
    command = "cancel_transfer"
    transfer_id: UUID
    reason: str
    note: str = ""
    owner: str = ""  # resolved from the transfer id
    barcode: str = ""


@dataclass(frozen=True, kw_only=True)
class ReceiveUnannounced(ItemCommand):
    command = "receive_unannounced"
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class DeclareLost(ItemCommand):
    command = "declare_lost"
    reason: str

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        return _loan_reader(loaded, self.item_id)


@dataclass(frozen=True, kw_only=True)
class Found(ItemCommand):
    command = "found"


@dataclass(frozen=True, kw_only=True)
class Withdraw(ItemCommand):
    command = "withdraw"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Correct(ItemCommand):
    command = "correct"
    corrects_version: int
    reason: str
    changes: dict[str, Any]


def _loan_reader(loaded: Mapping[UUID, Any], item: UUID) -> set[UUID]:
    aggregate = loaded.get(item)
    loan = getattr(aggregate, "loan", None)
    return {loan.reader_id} if loan is not None else set()


# --------------------------------------------------------------- disputes


@dataclass(frozen=True, kw_only=True)
class OpenDispute(ItemCommand):
    """``library`` opens a dispute about the item against ``other_party``.

    ``involved`` (every library the item's history names) is looked up by the
    resolve step, not sent by the caller: it is left out of the fingerprint.
    """

    command = "open_dispute"
    kind: str
    other_party: str
    statement: str
    dispute_id: UUID | None = None  # None: a fresh id; the sweep derives one from its trigger
    trigger: str | None = None
    reference_id: UUID | None = None
    involved: frozenset[str] = field(default=frozenset(), repr=False, metadata=RESOLVED)

    def aggregate_ids(self) -> set[UUID]:
        ids = super().aggregate_ids() | {library_id(self.other_party)}
        return ids | ({self.dispute_id} if self.dispute_id else set())


@dataclass(frozen=True, kw_only=True)
class DisputeCommand(Command):
    dispute_id: UUID

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.dispute_id}


@dataclass(frozen=True, kw_only=True)
class AddStatement(DisputeCommand):
    command = "add_statement"
    text: str


@dataclass(frozen=True, kw_only=True)
class AddAttachment(DisputeCommand):
    command = "add_attachment"
    uri: str
    sha256: str
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ResolveDispute(DisputeCommand):
    """The administrator rules; ``library`` defaults to the desk that opened the case."""

    command = "resolve_dispute"
    library: str = ""  # resolved: the actor's desk, else the desk that opened the case
    liable_library: str | None
    compensation: str  # CNY, a decimal string
    text: str


@dataclass(frozen=True, kw_only=True)
class WithdrawDispute(DisputeCommand):
    command = "withdraw_dispute"
    library: str = ""  # resolved as for ResolveDispute
    reason: str


@dataclass(frozen=True, kw_only=True)
class ClaimReturned(ItemCommand):
    """A reader says the item on loan was returned at ``returned_at``."""

    command = "claim_returned"
    returned_at: str
    claimed_on: str | None = None  # ISO date the reader names
    statement: str = ""

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {library_id(self.returned_at)}

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        loan = getattr(loaded.get(self.item_id), "loan", None)
        return {return_claim_id(loan.loan_id)} if loan is not None else set()

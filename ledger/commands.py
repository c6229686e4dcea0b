"""Commands: what a desk asks the ledger to record, as plain values.

A command knows which aggregates it needs (so a batch can load them all in one
query) and how to fingerprint itself (so a retried idempotency key can be told
apart from a reused one). The rules live in the domain; ``ledger.handlers``
applies a command to its aggregates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from ledger.domain.common import Actor, item_id, library_id
from ledger.domain.disputes import return_claim_id


@dataclass(frozen=True, kw_only=True)
class Command:
    name: ClassVar[str]
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
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        payload["command"] = self.name
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
    name = "join_library"
    code: str
    library_name: str
    region: str
    level: str
    policy: dict[str, Any]
    can_circulate: bool = True


@dataclass(frozen=True, kw_only=True)
class ChangePolicy(Command):
    name = "change_policy"
    policy: dict[str, Any]
    can_circulate: bool = True


@dataclass(frozen=True, kw_only=True)
class RegisterItem(ItemCommand):
    name = "register_item"
    title: str | None = None
    isbn: str | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterReader(Command):
    name = "register_reader"
    identity_hmac: str = field(repr=False)
    masked_number: str
    reader_id: UUID | None = None  # resolved from identity_hmac before execution

    def fingerprint(self) -> str:
        # The reader id is chosen at execution; the person is what the retry repeats.
        if self.digest:
            return self.digest
        payload = f"{self.name}|{self.identity_hmac}|{self.library}|{self.occurred_at}"
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ReaderCommand(Command):
    reader_id: UUID

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.reader_id}


@dataclass(frozen=True, kw_only=True)
class BlockReader(ReaderCommand):
    name = "block_reader"
    reason: str


@dataclass(frozen=True, kw_only=True)
class UnblockReader(ReaderCommand):
    name = "unblock_reader"


@dataclass(frozen=True, kw_only=True)
class ForgetReader(ReaderCommand):
    name = "forget_reader"


@dataclass(frozen=True, kw_only=True)
class Borrow(ItemCommand):
    name = "borrow"
    reader_id: UUID

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.reader_id}


@dataclass(frozen=True, kw_only=True)
class Renew(ItemCommand):
    name = "renew"
    loan_id: UUID


@dataclass(frozen=True, kw_only=True)
class Return(ItemCommand):
    name = "return"

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        return _loan_reader(loaded, self.item_id)


@dataclass(frozen=True, kw_only=True)
class Dispatch(ItemCommand):
    name = "dispatch"
    to_library: str

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {library_id(self.to_library)}


@dataclass(frozen=True, kw_only=True)
class Receive(ItemCommand):
    name = "receive"
    transfer_id: UUID


@dataclass(frozen=True, kw_only=True)
class CancelTransfer(ItemCommand):
    name = "cancel_transfer"
    transfer_id: UUID
    reason: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ReceiveUnannounced(ItemCommand):
    name = "receive_unannounced"
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class DeclareLost(ItemCommand):
    name = "declare_lost"
    reason: str

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        return _loan_reader(loaded, self.item_id)


@dataclass(frozen=True, kw_only=True)
class Found(ItemCommand):
    name = "found"


@dataclass(frozen=True, kw_only=True)
class Withdraw(ItemCommand):
    name = "withdraw"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Correct(ItemCommand):
    name = "correct"
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
    application, not sent by the caller: it is left out of the fingerprint.
    """

    name = "open_dispute"
    kind: str
    other_party: str
    statement: str
    dispute_id: UUID | None = None  # None: a fresh id; the sweep derives one from its trigger
    trigger: str | None = None
    reference_id: UUID | None = None
    involved: frozenset[str] = field(default=frozenset(), repr=False)

    def aggregate_ids(self) -> set[UUID]:
        ids = super().aggregate_ids() | {library_id(self.other_party)}
        return ids | ({self.dispute_id} if self.dispute_id else set())

    def fingerprint(self) -> str:
        if self.digest:
            return self.digest
        return Command.fingerprint(replace(self, involved=frozenset()))


@dataclass(frozen=True, kw_only=True)
class DisputeCommand(Command):
    dispute_id: UUID

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {self.dispute_id}


@dataclass(frozen=True, kw_only=True)
class AddStatement(DisputeCommand):
    name = "add_statement"
    text: str


@dataclass(frozen=True, kw_only=True)
class AddAttachment(DisputeCommand):
    name = "add_attachment"
    uri: str
    sha256: str
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class ResolveDispute(DisputeCommand):
    name = "resolve_dispute"
    liable_library: str | None
    compensation: str  # CNY, a decimal string
    text: str


@dataclass(frozen=True, kw_only=True)
class WithdrawDispute(DisputeCommand):
    name = "withdraw_dispute"
    reason: str


@dataclass(frozen=True, kw_only=True)
class ClaimReturned(ItemCommand):
    """A reader says the item on loan was returned at ``returned_at``."""

    name = "claim_returned"
    returned_at: str
    claimed_on: str | None = None  # ISO date the reader names
    statement: str = ""

    def aggregate_ids(self) -> set[UUID]:
        return super().aggregate_ids() | {library_id(self.returned_at)}

    def dependent_ids(self, loaded: Mapping[UUID, Any]) -> set[UUID]:
        loan = getattr(loaded.get(self.item_id), "loan", None)
        return {return_claim_id(loan.loan_id)} if loan is not None else set()

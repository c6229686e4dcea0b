"""Apply one command to its aggregates. No SQL, no threads: just the orchestration.

Each handler reads the aggregates it needs from a ``Work`` (already loaded), calls
one domain method on each, and returns the outcome a desk should see, as plain
JSON values (it is stored for idempotent retries). Domain methods check every
rule before triggering an event, so a handler that raises changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from ledger import commands as c
from ledger.domain.common import Context, library_id
from ledger.domain.disputes import Dispute, ReturnClaim, return_claim_id
from ledger.domain.errors import (
    DuplicateDispute,
    DuplicateItem,
    DuplicateLibrary,
    DuplicateReturnClaim,
    InvalidInput,
    ItemNotOnLoan,
    NotPermitted,
    UnknownDispute,
    UnknownItem,
    UnknownLibrary,
    UnknownReader,
    WrongLibrary,
)
from ledger.domain.items import Item
from ledger.domain.libraries import Library, LoanPolicy, check_code
from ledger.domain.readers import Reader

Outcome = dict[str, Any]


class Work(Protocol):
    """What a handler may touch: loaded aggregates and the side rows of the save."""

    loan_limit: int

    def get(self, aggregate_id: UUID) -> Aggregate | None: ...
    def add(self, aggregate: Aggregate) -> None: ...
    def reference(self, reference_id: UUID, kind: str, item: Item) -> None: ...
    def link_identity(self, identity_hmac: str, reader_id: UUID) -> None: ...
    def forget(self, reader_id: UUID) -> None: ...


def _library(work: Work, code: str, field: str = "library") -> Library:
    library = work.get(library_id(code))
    if not isinstance(library, Library) or not library.member:
        raise UnknownLibrary(f"no member library {code}", field=field)
    return library


def _item(work: Work, cmd: c.ItemCommand) -> Item:
    item = work.get(cmd.item_id)
    if not isinstance(item, Item):
        raise UnknownItem(f"no item {cmd.barcode} owned by {cmd.owner}", field="barcode")
    return item


def _reader(work: Work, reader_id: UUID) -> Reader:
    reader = work.get(reader_id)
    if not isinstance(reader, Reader):
        raise UnknownReader(f"no reader {reader_id}", field="reader_id")
    return reader


def _env(ctx: Context) -> dict[str, Any]:
    return ctx.fields()


def join_library(cmd: c.JoinLibrary, ctx: Context, work: Work) -> Outcome:
    if not cmd.actor.is_admin:
        raise NotPermitted("only the consortium administrator registers libraries")
    check_code(cmd.code, field="code")
    if work.get(library_id(cmd.code)) is not None:
        raise DuplicateLibrary(f"library {cmd.code} is already registered", field="code")
    library = Library.join(
        library_id(cmd.code),
        code=cmd.code,
        name=cmd.name,
        region=cmd.region,
        level=cmd.level,
        policy=LoanPolicy.from_dict(cmd.policy),
        can_circulate=cmd.can_circulate,
        **_env(ctx),
    )
    work.add(library)
    return {"code": cmd.code, "library_id": str(library.id)}


def change_policy(cmd: c.ChangePolicy, ctx: Context, work: Work) -> Outcome:
    if not cmd.actor.is_admin:
        raise NotPermitted("only the consortium administrator sets loan policy")
    library = _library(work, cmd.library)
    library.change_policy(LoanPolicy.from_dict(cmd.policy), cmd.can_circulate, **_env(ctx))
    return {"code": library.code, "policy": library.policy.as_dict()}


def register_item(cmd: c.RegisterItem, ctx: Context, work: Work) -> Outcome:
    if cmd.library != cmd.owner:
        raise WrongLibrary("an item is registered by its owner library", field="owner")
    _library(work, cmd.owner, field="owner")
    if not cmd.barcode.strip():
        raise InvalidInput("a barcode cannot be empty", field="barcode")
    if work.get(cmd.item_id) is not None:
        raise DuplicateItem(
            f"{cmd.owner} already registered an item with barcode {cmd.barcode}", field="barcode"
        )
    item = Item.register(cmd.item_id, cmd.owner, cmd.barcode, cmd.title, cmd.isbn, **_env(ctx))
    work.add(item)
    return {"item_id": str(item.id), "owner": cmd.owner, "barcode": cmd.barcode}


def register_reader(cmd: c.RegisterReader, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    assert cmd.reader_id is not None and cmd.identity_hmac, "resolved before it runs"
    reader = Reader.register(cmd.reader_id, cmd.masked_number, cmd.library, **_env(ctx))
    work.add(reader)
    work.link_identity(cmd.identity_hmac, reader.id)
    return {
        "reader_id": str(reader.id),
        "masked_number": cmd.masked_number,
        "home_library": cmd.library,
        "created": True,
    }


def block_reader(cmd: c.BlockReader, ctx: Context, work: Work) -> Outcome:
    reader = _reader(work, cmd.reader_id)
    _require_home_or_admin(cmd, reader)
    reader.block(cmd.reason, **_env(ctx))
    return {"reader_id": str(reader.id), "blocked": True}


def unblock_reader(cmd: c.UnblockReader, ctx: Context, work: Work) -> Outcome:
    reader = _reader(work, cmd.reader_id)
    _require_home_or_admin(cmd, reader)
    reader.unblock(**_env(ctx))
    return {"reader_id": str(reader.id), "blocked": False}


def forget_reader(cmd: c.ForgetReader, ctx: Context, work: Work) -> Outcome:
    if not cmd.actor.is_admin:
        raise NotPermitted("only the consortium administrator honours deletion requests")
    assert cmd.reader_id is not None, "resolved before it runs"
    reader = _reader(work, cmd.reader_id)
    reader.forget(**_env(ctx))
    work.forget(reader.id)
    return {"reader_id": str(reader.id), "forgotten": True}


def _require_home_or_admin(cmd: c.ReaderCommand, reader: Reader) -> None:
    if not cmd.actor.is_admin and cmd.library != reader.home_library:
        raise NotPermitted(
            f"only the reader's home library {reader.home_library} can do this", field="library"
        )


def borrow(cmd: c.Borrow, ctx: Context, work: Work) -> Outcome:
    library = _library(work, cmd.library)
    library.require_circulating()
    item = _item(work, cmd)
    if cmd.reader_id is None:
        raise UnknownReader("name the reader by reader_id or identity number", field="reader")
    reader = _reader(work, cmd.reader_id)
    reader.check_can_borrow(work.loan_limit)
    loan_id = uuid4()
    due_at = item.borrow(loan_id, reader.id, library.policy, **_env(ctx))
    reader.open_loan(loan_id, item.id, work.loan_limit, **_env(ctx))
    work.reference(loan_id, "loan", item)
    return {
        "loan_id": str(loan_id),
        "item_id": str(item.id),
        "reader_id": str(reader.id),
        "due_at": due_at.isoformat(),
    }


def renew(cmd: c.Renew, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    loan = item.loan
    lender = _library(work, loan.library) if loan is not None else None
    policy = lender.policy if lender is not None else LoanPolicy()
    reader = work.get(loan.reader_id) if loan is not None else None
    due_at = item.renew(
        cmd.loan_id,
        policy,
        reader_home=reader.home_library if isinstance(reader, Reader) else None,
        **_env(ctx),
        **_admin_bypass(cmd),
    )
    assert item.loan is not None
    return {
        "loan_id": str(cmd.loan_id),
        "due_at": due_at.isoformat(),
        "renewals": item.loan.renewals,
    }


def return_(cmd: c.Return, ctx: Context, work: Work) -> Outcome:
    library = _library(work, cmd.library)
    library.require_circulating()
    owner = _library(work, cmd.owner, field="owner")
    item = _item(work, cmd)
    reader = work.get(item.loan.reader_id) if item.loan is not None else None
    loan, disposition = item.return_(owner.policy, **_env(ctx))
    if isinstance(reader, Reader):
        reader.close_loan(loan.loan_id, "returned", **_env(ctx))
    return {
        "loan_id": str(loan.loan_id),
        "item_id": str(item.id),
        "disposition": str(disposition),
        "borrowed_at": loan.library,
        "owner": item.owner,
    }


def dispatch(cmd: c.Dispatch, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    _library(work, cmd.to_library, field="to_library")
    item = _item(work, cmd)
    transfer_id = uuid4()
    item.dispatch(transfer_id, cmd.to_library, **_env(ctx))
    work.reference(transfer_id, "transfer", item)
    return {
        "transfer_id": str(transfer_id),
        "item_id": str(item.id),
        "from_library": cmd.library,
        "to_library": cmd.to_library,
    }


def receive(cmd: c.Receive, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    item.receive(cmd.transfer_id, **_env(ctx))
    return {"transfer_id": str(cmd.transfer_id), "item_id": str(item.id), "at": cmd.library}


def cancel_transfer(cmd: c.CancelTransfer, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    try:
        item.cancel_transfer(cmd.transfer_id, cmd.reason, cmd.note, **_env(ctx))
    except ValueError:
        raise InvalidInput(f"unknown cancellation reason {cmd.reason!r}", field="reason") from None
    return {"transfer_id": str(cmd.transfer_id), "item_id": str(item.id), "status": item.status}


def receive_unannounced(cmd: c.ReceiveUnannounced, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    item.receive_unannounced(cmd.note, **_env(ctx))
    return {"item_id": str(item.id), "at": cmd.library}


def declare_lost(cmd: c.DeclareLost, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    reader = work.get(item.loan.reader_id) if item.loan is not None else None
    loan = item.declare_lost(cmd.reason, **_env(ctx), **_admin_bypass(cmd))
    if loan is not None and isinstance(reader, Reader):
        reader.close_loan(loan.loan_id, "lost", **_env(ctx))
    return {"item_id": str(item.id), "loan_id": str(loan.loan_id) if loan else None}


def found(cmd: c.Found, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    item.found(**_env(ctx))
    return {"item_id": str(item.id), "at": cmd.library}


def withdraw(cmd: c.Withdraw, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    item.withdraw(cmd.reason, **_env(ctx))
    return {"item_id": str(item.id), "status": item.status}


def correct(cmd: c.Correct, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    item = _item(work, cmd)
    changes = dict(cmd.changes)
    if "location" in changes:
        _library(work, str(changes["location"]), field="changes.location")
    item.correct(cmd.corrects_version, cmd.reason, changes, **_env(ctx), **_admin_bypass(cmd))
    return {"item_id": str(item.id), "corrects_version": cmd.corrects_version}


def open_dispute(cmd: c.OpenDispute, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    _library(work, cmd.other_party, field="other_party")
    item = _item(work, cmd)
    dispute_id = cmd.dispute_id or uuid4()
    if work.get(dispute_id) is not None:
        raise DuplicateDispute(f"dispute {dispute_id} is already open", field="dispute_id")
    dispute = Dispute.open(
        dispute_id,
        item_id=item.id,
        owner=item.owner,
        barcode=item.barcode,
        kind=cmd.kind,
        other_party=cmd.other_party,
        statement=cmd.statement,
        involved=cmd.involved,
        trigger=cmd.trigger,
        reference_id=cmd.reference_id,
        **_env(ctx),
    )
    work.add(dispute)
    return _dispute_outcome(dispute)


def _dispute(work: Work, dispute_id: UUID) -> Dispute:
    dispute = work.get(dispute_id)
    if not isinstance(dispute, Dispute):
        raise UnknownDispute(f"no dispute {dispute_id}", field="dispute_id")
    return dispute


def _dispute_outcome(dispute: Dispute) -> Outcome:
    return {
        "dispute_id": str(dispute.id),
        "item_id": str(dispute.item_id),
        "kind": str(dispute.kind),
        "status": str(dispute.status),
        "parties": list(dispute.parties),
    }


def add_statement(cmd: c.AddStatement, ctx: Context, work: Work) -> Outcome:
    dispute = _dispute(work, cmd.dispute_id)
    dispute.add_statement(cmd.text, **_env(ctx))
    return {**_dispute_outcome(dispute), "statements": len(dispute.statements)}


def add_attachment(cmd: c.AddAttachment, ctx: Context, work: Work) -> Outcome:
    dispute = _dispute(work, cmd.dispute_id)
    dispute.add_attachment(cmd.uri, cmd.sha256, cmd.description, **_env(ctx))
    return {**_dispute_outcome(dispute), "attachments": len(dispute.attachments)}


def resolve_dispute(cmd: c.ResolveDispute, ctx: Context, work: Work) -> Outcome:
    dispute = _dispute(work, cmd.dispute_id)
    dispute.resolve(
        cmd.liable_library, cmd.compensation, cmd.text, as_admin=cmd.actor.is_admin, **_env(ctx)
    )
    assert dispute.resolution is not None
    return {
        **_dispute_outcome(dispute),
        "liable_library": dispute.resolution.liable_library,
        "compensation_cny": str(dispute.resolution.compensation_cny),
    }


def withdraw_dispute(cmd: c.WithdrawDispute, ctx: Context, work: Work) -> Outcome:
    dispute = _dispute(work, cmd.dispute_id)
    dispute.withdraw(cmd.reason, as_admin=cmd.actor.is_admin, **_env(ctx))
    return _dispute_outcome(dispute)


def claim_returned(cmd: c.ClaimReturned, ctx: Context, work: Work) -> Outcome:
    _library(work, cmd.library)
    _library(work, cmd.returned_at, field="returned_at")
    item = _item(work, cmd)
    if item.loan is None:
        raise ItemNotOnLoan(
            f"item {item.owner}/{item.barcode} is not on loan: there is no return to claim",
            field="barcode",
        )
    if cmd.claimed_on is not None:
        try:
            date.fromisoformat(cmd.claimed_on)
        except ValueError:
            raise InvalidInput("claimed_on is a date like 2026-11-25", field="claimed_on") from None
    # Built (and so checked: who may record it) before asking whether the loan's one claim
    # exists, so a desk with nothing to do with the loan learns only that it may not.
    claim = ReturnClaim.record(
        item_id=item.id,
        owner=item.owner,
        barcode=item.barcode,
        loan_id=item.loan.loan_id,
        lending_library=item.loan.library,
        returned_at=cmd.returned_at,
        claimed_on=cmd.claimed_on,
        statement=cmd.statement,
        **_env(ctx),
        **_admin_bypass(cmd),
    )
    if work.get(return_claim_id(item.loan.loan_id)) is not None:
        raise DuplicateReturnClaim(
            f"a return was already claimed for loan {item.loan.loan_id}", field="barcode"
        )
    work.add(claim)
    return {
        "claim_id": str(claim.id),
        "item_id": str(item.id),
        "loan_id": str(claim.loan_id),
        "lending_library": claim.lending_library,
        "returned_at": claim.returned_at,
    }


def _admin_bypass(cmd: c.Command) -> dict[str, bool]:
    return {"as_admin": True} if cmd.actor.is_admin else {}


HANDLERS: dict[type[c.Command], Callable[[Any, Context, Work], Outcome]] = {
    c.JoinLibrary: join_library,
    c.ChangePolicy: change_policy,
    c.RegisterItem: register_item,
    c.RegisterReader: register_reader,
    c.BlockReader: block_reader,
    c.UnblockReader: unblock_reader,
    c.ForgetReader: forget_reader,
    c.Borrow: borrow,
    c.Renew: renew,
    c.Return: return_,
    c.Dispatch: dispatch,
    c.Receive: receive,
    c.CancelTransfer: cancel_transfer,
    c.ReceiveUnannounced: receive_unannounced,
    c.DeclareLost: declare_lost,
    c.Found: found,
    c.Withdraw: withdraw,
    c.Correct: correct,
    c.OpenDispute: open_dispute,
    c.AddStatement: add_statement,
    c.AddAttachment: add_attachment,
    c.ResolveDispute: resolve_dispute,
    c.WithdrawDispute: withdraw_dispute,
    c.ClaimReturned: claim_returned,
}

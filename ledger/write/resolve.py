"""The resolve step: fill in what a command names the desk's way before the rules run.

A desk names a reader by the card shown, a renewal by its loan, a receipt by its
shipment; a dispute's parties come from the item's history. These need reads, so they
happen here, once per command, before the command is authorised and fingerprinted
(a retry resolves to the same values, so it fingerprints the same).
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID, uuid4

from ledger import commands as c
from ledger.domain.common import item_id
from ledger.domain.disputes import Dispute, libraries_named, return_claim_id
from ledger.domain.errors import UnknownDispute, UnknownLoan, UnknownReader, UnknownTransfer
from ledger.domain.identity import DocumentKind, IdentityHasher, parse_identity_number
from ledger.domain.items import Item
from ledger.write.work import UnitOfWork


class Resolver:
    def __init__(self, uow: UnitOfWork, hasher: IdentityHasher) -> None:
        self.uow = uow
        self.hasher = hasher

    def __call__(self, cmd: c.Command) -> c.Command:
        match cmd:
            case c.RegisterReader():
                return self._registration(cmd)
            case c.Borrow() | c.ForgetReader() if cmd.reader_id is None:
                if cmd.reader is None:
                    raise UnknownReader(
                        "name the reader by reader_id or identity number", field="reader"
                    )
                return replace(cmd, reader_id=self.reader(cmd.reader.number), reader=None)
            case c.Renew() if not cmd.owner:
                return self._item_of(cmd, cmd.loan_id, "loan")
            case c.Receive() | c.CancelTransfer() if not cmd.owner:
                return self._item_of(cmd, cmd.transfer_id, "transfer")
            case c.OpenDispute() if not cmd.involved:
                return replace(cmd, involved=self.involved(item_id(cmd.owner, cmd.barcode)))
            case c.ResolveDispute() | c.WithdrawDispute() if not cmd.library:
                return replace(cmd, library=self._dispute_desk(cmd))
        return cmd

    def reader(self, number: str) -> UUID:
        """The reader registered with this identity number."""
        identity = parse_identity_number(number)
        reader_id = self.uow.reader_for_hmac(self.hasher.digest(identity))
        if reader_id is None:
            raise UnknownReader(
                f"no reader registered with number {identity.masked()}: register the reader first",
                field="reader",
            )
        return reader_id

    def involved(self, item: UUID) -> frozenset[str]:
        """Every library the item's history names: both parties of a dispute must be there."""
        stream = self.uow.streams([item])[item]
        loans = [e.loan_id for e in stream if isinstance(e, Item.Borrowed)]
        claims = self.uow.streams([return_claim_id(loan) for loan in loans]) if loans else {}
        return libraries_named(stream, (e for events in claims.values() for e in events))

    def _registration(self, cmd: c.RegisterReader) -> c.RegisterReader:
        """Both cards carry the same number, so both reach the same reader."""
        if cmd.identity_hmac:  # resolved already (the bulk generator hashes its own)
            return cmd
        DocumentKind(cmd.document)
        identity = parse_identity_number(cmd.number)
        digest = self.hasher.digest(identity)
        existing = self.uow.reader_for_hmac(digest)
        return replace(
            cmd,
            number="",
            identity_hmac=digest,
            masked_number=identity.masked(),
            reader_id=existing or cmd.reader_id or uuid4(),
            known=existing is not None,
        )

    def _item_of(self, cmd: c.ItemCommand, reference_id: UUID, kind: str) -> c.Command:
        found = self.uow.reference(reference_id, kind)
        if found is None:
            error = UnknownLoan if kind == "loan" else UnknownTransfer
            raise error(f"no {kind} {reference_id}", field=f"{kind}_id")
        owner, barcode = found
        return replace(cmd, owner=owner, barcode=barcode)

    def _dispute_desk(self, cmd: c.DisputeCommand) -> str:
        """Where a ruling or withdrawal is recorded when the caller names no library: the
        actor's own desk, else (the administrator) the desk that opened the case."""
        if cmd.actor.library is not None:
            return cmd.actor.library
        dispute = self.uow.peek([cmd.dispute_id]).get(cmd.dispute_id)
        if dispute is None:
            dispute = self.uow.load([cmd.dispute_id])[cmd.dispute_id]
        if not isinstance(dispute, Dispute):
            raise UnknownDispute(f"no dispute {cmd.dispute_id}", field="dispute_id")
        return dispute.opened_by

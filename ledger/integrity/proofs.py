"""Proof documents as the API publishes them, and the offline checks a library runs.

``check_receipt`` and ``check_consistency`` take only files' contents: a receipt, a proof
and signed checkpoints. They trust no hash the ledger computed for them — every root comes
from a signed checkpoint, every path is re-hashed (RFC 9162) — and each refusal says
which check failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.merkle import InvalidProof, verify_consistency, verify_inclusion
from ledger.integrity.receipts import MalformedDocument, Receipt, ReceiptEntry, hex_hash

INCLUSION = "tongjie-inclusion-proof/1"
CONSISTENCY = "tongjie-consistency-proof/1"


@dataclass(frozen=True, slots=True)
class InclusionProof:
    ledger: str
    position: int
    leaf_index: int
    leaf_hash: bytes
    tree_size: int
    root_hash: bytes  # where the path leads; a verifier takes the root from a checkpoint
    path: tuple[bytes, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": INCLUSION,
            "ledger": self.ledger,
            "position": self.position,
            "leaf_index": self.leaf_index,
            "leaf_hash": self.leaf_hash.hex(),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InclusionProof:
        if data.get("format") != INCLUSION:
            raise MalformedDocument(f"not an inclusion proof: expected format {INCLUSION!r}")
        try:
            return cls(
                str(data["ledger"]),
                int(data["position"]),
                int(data["leaf_index"]),
                hex_hash(data["leaf_hash"]),
                int(data["tree_size"]),
                hex_hash(data["root_hash"]),
                tuple(hex_hash(h) for h in data["path"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedDocument(f"malformed inclusion proof: {error}") from None


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    ledger: str
    from_size: int
    to_size: int
    from_root: bytes
    to_root: bytes
    path: tuple[bytes, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CONSISTENCY,
            "ledger": self.ledger,
            "from": self.from_size,
            "to": self.to_size,
            "from_root": self.from_root.hex(),
            "to_root": self.to_root.hex(),
            "path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyProof:
        if data.get("format") != CONSISTENCY:
            raise MalformedDocument(f"not a consistency proof: expected format {CONSISTENCY!r}")
        try:
            return cls(
                str(data["ledger"]),
                int(data["from"]),
                int(data["to"]),
                hex_hash(data["from_root"]),
                hex_hash(data["to_root"]),
                tuple(hex_hash(h) for h in data["path"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedDocument(f"malformed consistency proof: {error}") from None


class VerificationFailed(Exception):
    """An offline check failed; the message says which one, for a person to act on."""


def check_checkpoint(checkpoint: Checkpoint, trusted_key: bytes | None = None) -> None:
    """The signature verifies, and (when the library pinned one) with the pinned key."""
    if trusted_key is not None and checkpoint.public_key != trusted_key:
        raise VerificationFailed(
            f"the checkpoint is signed with key {checkpoint.key_fingerprint[:16]}…, not the"
            " ledger key you trust: it is not from your ledger, or the ledger's key changed"
        )
    try:
        checkpoint.verify_signature()
    except ValueError as error:
        raise VerificationFailed(str(error)) from None


def check_receipt(
    receipt: Receipt,
    proof: InclusionProof,
    checkpoint: Checkpoint,
    *,
    trusted_key: bytes | None = None,
) -> ReceiptEntry:
    """The receipt's event is in the history the checkpoint signed. Returns its entry."""
    check_checkpoint(checkpoint, trusted_key)
    if receipt.ledger != checkpoint.ledger:
        raise VerificationFailed(
            f"the receipt is from ledger {receipt.ledger}, the checkpoint from ledger "
            f"{checkpoint.ledger}: a receipt from another ledger proves nothing here"
        )
    if proof.ledger != checkpoint.ledger:
        raise VerificationFailed(
            f"the proof is from ledger {proof.ledger}, the checkpoint from {checkpoint.ledger}"
        )
    try:
        entry = receipt.entry(proof.position)
    except MalformedDocument as error:
        raise VerificationFailed(f"{error}; the proof is for position {proof.position}") from None
    if entry.leaf_index != proof.leaf_index:
        raise VerificationFailed(
            f"the receipt puts position {entry.position} at leaf {entry.leaf_index}, the proof at"
            f" leaf {proof.leaf_index}: the ledger moved the event"
        )
    if entry.leaf_hash != proof.leaf_hash:
        raise VerificationFailed(
            f"the leaf hash of position {entry.position} differs between the receipt and the"
            " proof: the event was changed after it was recorded"
        )
    if proof.tree_size != checkpoint.tree_size:
        raise VerificationFailed(
            f"the proof is for a tree of {proof.tree_size} events, the checkpoint signs"
            f" {checkpoint.tree_size}: ask for a proof at tree_size={checkpoint.tree_size}"
        )
    try:
        verify_inclusion(
            entry.leaf_index,
            checkpoint.tree_size,
            entry.leaf_hash,
            proof.path,
            checkpoint.root_hash,
        )
    except InvalidProof as error:
        raise VerificationFailed(f"the inclusion proof fails: {error}") from None
    return entry


def check_consistency(
    proof: ConsistencyProof,
    old: Checkpoint,
    new: Checkpoint,
    *,
    trusted_key: bytes | None = None,
) -> None:
    """The newer signed checkpoint extends the older one without rewriting it."""
    for checkpoint in (old, new):
        check_checkpoint(checkpoint, trusted_key)
    if old.ledger != new.ledger or proof.ledger != new.ledger:
        raise VerificationFailed("the checkpoints and the proof are not all from one ledger")
    if (proof.from_size, proof.to_size) != (old.tree_size, new.tree_size):
        raise VerificationFailed(
            f"the proof runs from {proof.from_size} to {proof.to_size}, the checkpoints are at"
            f" {old.tree_size} and {new.tree_size}"
        )
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof.path)
    except InvalidProof as error:
        raise VerificationFailed(f"the consistency proof fails: {error}") from None

"""Refusals of proof and checkpoint requests, each with a stable code (problem ``type``)."""

from __future__ import annotations

from ledger.domain.errors import DomainError, InvalidInput, NotFound


class EmptyTree(InvalidInput):
    """A tree of size 0 holds no events: there is nothing to prove or sign."""

    code = "empty-tree"


class BeyondTreeSize(DomainError):
    """The request names a tree size or position the ledger has not reached yet."""

    code = "beyond-tree-size"


class NotInTree(InvalidInput):
    """The event is not in a tree of that size: it was recorded later."""

    code = "not-in-tree"


class BadProofRange(InvalidInput):
    """A consistency proof runs from an earlier tree size to a later one."""

    code = "bad-proof-range"


class UnknownPosition(NotFound):
    """No stored event has that position (notification id)."""

    code = "unknown-position"


class NoCheckpoint(NotFound):
    """The ledger has signed no checkpoint yet."""

    code = "no-checkpoint"


class UnknownCheckpoint(NotFound):
    """No checkpoint was signed at that tree size."""

    code = "unknown-checkpoint"


class BadConfirmationSignature(DomainError):
    """A witness confirmation's signature does not verify for that checkpoint."""

    code = "bad-confirmation-signature"


class SigningKeyMissing(DomainError):
    """This process holds no signing key, so it cannot sign a checkpoint."""

    code = "signing-key-missing"

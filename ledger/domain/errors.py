"""Domain errors: one class per broken rule, each with a stable machine-readable code.

The code is what the HTTP layer publishes as the problem ``type``; the message is
written for a librarian at a desk. ``field`` names the input that was wrong, when one was.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule; nothing was recorded."""

    code = "domain-error"
    status = 422  # the HTTP status that fits; the web layer reads it, the domain ignores it

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    code = "invalid-input"
    status = 400


class InvalidIdentityNumber(InvalidInput):
    """A resident identity number failed validation; ``part`` says which part."""

    code = "invalid-identity-number"

    def __init__(self, message: str, *, part: str, field: str | None = "number") -> None:
        super().__init__(message, field=field)
        self.part = part


class OccurredInFuture(InvalidInput):
    code = "occurred-in-future"


class NotFound(DomainError):
    code = "not-found"
    status = 404


class UnknownLibrary(NotFound):
    code = "unknown-library"


class UnknownItem(NotFound):
    code = "unknown-item"


class UnknownReader(NotFound):
    code = "unknown-reader"


class UnknownLoan(NotFound):
    code = "unknown-loan"


class UnknownTransfer(NotFound):
    code = "unknown-transfer"


class AlreadyExists(DomainError):
    code = "already-exists"
    status = 409


class DuplicateLibrary(AlreadyExists):
    code = "duplicate-library"


class DuplicateItem(AlreadyExists):
    code = "duplicate-item"


class StateConflict(DomainError):
    """The item (or reader) is not in a state that allows the command."""

    code = "state-conflict"
    status = 409


class ItemNotAvailable(StateConflict):
    code = "item-not-available"


class ItemNotOnLoan(StateConflict):
    code = "item-not-on-loan"


class ItemInTransit(StateConflict):
    code = "item-in-transit"


class ItemNotInTransit(StateConflict):
    code = "item-not-in-transit"


class ItemWithdrawn(StateConflict):
    code = "item-withdrawn"


class ItemNotLost(StateConflict):
    code = "item-not-lost"


class LibraryNotCirculating(StateConflict):
    code = "library-not-circulating"


class RuleBroken(DomainError):
    code = "rule-broken"
    status = 422


class ReaderOverLimit(RuleBroken):
    code = "reader-over-limit"


class ReaderBlocked(RuleBroken):
    code = "reader-blocked"


class RenewalNotAllowed(RuleBroken):
    code = "renewal-not-allowed"


class WrongLibrary(DomainError):
    """A library key tried to record an event at another library's desk."""

    code = "wrong-library"
    status = 403


class NotPermitted(DomainError):
    code = "not-permitted"
    status = 403


class ConcurrencyConflict(DomainError):
    """Another command changed the same item first; retry with fresh state."""

    code = "conflict"
    status = 409


class IdempotencyKeyReused(DomainError):
    """The same command_id was sent before with different content."""

    code = "idempotency-key-reused"
    status = 422

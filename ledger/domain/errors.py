"""Domain errors: one class per broken rule, each with a stable machine-readable code.

The code is what the HTTP layer publishes as the problem ``type``; the message is
written for a librarian at a desk. ``field`` names the input that was wrong, when one was.
Which HTTP status fits each kind of refusal is the web layer's business (``web.problems``).
"""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule; nothing was recorded."""

    code = "domain-error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """The request was well formed, but a value breaks a rule (a bad identity number,
    a date in the future, a transfer to the library it is at)."""

    code = "invalid-input"


class InvalidIdentityNumber(InvalidInput):
    """A resident identity number failed validation; ``part`` says which part."""

    code = "invalid-identity-number"

    def __init__(self, message: str, *, part: str, field: str | None = "number") -> None:
        super().__init__(message, field=field)
        self.part = part


class OccurredInFuture(InvalidInput):
    """occurred_at is later than the ledger's clock (beyond the allowed desk clock skew)."""

    code = "occurred-in-future"


class NotFound(DomainError):
    """A library, item, reader, loan or transfer the command names does not exist."""

    code = "not-found"


class UnknownLibrary(NotFound):
    """No member library has this code."""

    code = "unknown-library"


class UnknownItem(NotFound):
    """The owner library registered no item with this barcode."""

    code = "unknown-item"


class UnknownReader(NotFound):
    """No reader is registered under this reader_id or identity number."""

    code = "unknown-reader"


class UnknownLoan(NotFound):
    """No open loan has this loan_id."""

    code = "unknown-loan"


class UnknownTransfer(NotFound):
    """No open transfer has this transfer_id."""

    code = "unknown-transfer"


class AlreadyExists(DomainError):
    """The record the command would create exists already."""

    code = "already-exists"


class DuplicateLibrary(AlreadyExists):
    """A library with this code is registered already."""

    code = "duplicate-library"


class DuplicateItem(AlreadyExists):
    """The owner registered an item with this barcode already."""

    code = "duplicate-item"


class StateConflict(DomainError):
    """The item (or reader) is not in a state that allows the command."""

    code = "state-conflict"


class ItemNotAvailable(StateConflict):
    """The item is not on shelf at the library that wants to lend or ship it, or is not
    missing (on shelf, or on loan) and so cannot arrive unannounced."""

    code = "item-not-available"


class ItemNotOnLoan(StateConflict):
    """The item is not on loan, so it cannot be returned or have its loan changed."""

    code = "item-not-on-loan"


class ItemInTransit(StateConflict):
    """The item is travelling between libraries; receive or cancel the transfer first."""

    code = "item-in-transit"


class ItemNotInTransit(StateConflict):
    """The item is not in transit under this transfer."""

    code = "item-not-in-transit"


class ItemWithdrawn(StateConflict):
    """The item was withdrawn from circulation."""

    code = "item-withdrawn"


class ItemNotLost(StateConflict):
    """The item is not recorded as lost, so it cannot be found."""

    code = "item-not-lost"


class LoanClosed(StateConflict):
    """The loan ended (returned or declared lost): it can no longer be renewed."""

    code = "loan-closed"


class LibraryNotCirculating(StateConflict):
    """The library is a member but does not circulate items yet."""

    code = "library-not-circulating"


class RuleBroken(DomainError):
    """A circulation rule refuses the command."""

    code = "rule-broken"


class ReaderOverLimit(RuleBroken):
    """The reader has as many open loans as the consortium allows."""

    code = "reader-over-limit"


class ReaderBlocked(RuleBroken):
    """The reader is blocked and may not borrow."""

    code = "reader-blocked"


class RenewalNotAllowed(RuleBroken):
    """The lending library's policy allows no further renewal of this loan."""

    code = "renewal-not-allowed"


class WrongLibrary(DomainError):
    """A library key tried to record an event at another library's desk."""

    code = "wrong-library"


class NotPermitted(DomainError):
    """This library (or key) may not do this to this item, reader or library."""

    code = "not-permitted"


class AdministratorOnly(NotPermitted):
    """Only the consortium administrator may do this (resolve a dispute)."""

    code = "administrator-only"


class UnknownDispute(NotFound):
    code = "unknown-dispute"


class NotADisputeParty(DomainError):
    """The library is not a party: it never handled the item, or is not in this dispute."""

    code = "not-a-dispute-party"


class DuplicateDispute(AlreadyExists):
    code = "duplicate-dispute"


class DuplicateReturnClaim(AlreadyExists):
    """A return was already claimed for this loan."""

    code = "duplicate-return-claim"


class DisputeClosed(StateConflict):
    """The dispute was resolved or withdrawn; it takes no more statements or rulings."""

    code = "dispute-closed"


class PositionNotRecorded(InvalidInput):
    """A read asked to wait for a log position that no command has reached."""

    code = "position-not-recorded"


class ProjectionBehind(DomainError):
    """The read models have not folded the asked position in time (is the worker running?)."""

    code = "projection-behind"


class ConcurrencyConflict(DomainError):
    """Another command changed the same item first; retry with fresh state."""

    code = "conflict"


class IdempotencyKeyReused(DomainError):
    """The same command_id was sent before with different content."""

    code = "idempotency-key-reused"

"""Request and response shapes, published in /openapi.json.

A request that does not match its schema is refused with 400 before the ledger sees
it: unknown fields (marshmallow's RAISE), wrong JSON types (integers and booleans are
strict: no ``"5"``, no ``"yes"``), text the database or a log line cannot hold
(control characters, unpaired surrogates), library codes and barcodes of the wrong
shape, and moments outside the years the ledger deals in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from ledger.commands import ReaderCard
from ledger.domain.identity import DocumentKind
from ledger.domain.items import TransferCancelReason
from ledger.domain.libraries import Level, Region, ReturnMode

#: A member library's code, e.g. SC-510100 (Sichuan) or CQ-500103 (Chongqing). ASCII digits
#: only: ``\d`` would also take Arabic-Indic or full-width digits.
CODE_REGEX = r"(?:SC|CQ)-[0-9]{6}(?:-[A-Z])?"

#: Barcodes are path segments (/items/{owner}/{barcode}): URL-unreserved characters only,
#: so every barcode can be addressed without escaping, and never "." or "..".
BARCODE_REGEX = r"[0-9A-Za-z][0-9A-Za-z._~-]{0,63}"

#: Anything a PostgreSQL text column, a JSON log line and a UTF-8 encoder accept: no C0
#: control characters (NUL breaks text columns) and no unpaired surrogates. Free text
#: (reasons, notes) may contain tabs and line breaks.
_ONE_LINE = r"[^\x00-\x1f\x7f\ud800-\udfff]"
_MULTI_LINE = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]"

#: Moments the ledger accepts: from before any member's automated circulation to long
#: after any loan could fall due. The bounds also keep every UTC offset convertible.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099


class FullMatch(validate.Regexp):
    """A pattern the whole value must match (``Regexp`` lets "SC-510100\\n" through ``$``)."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def Code(*, description: str = "", **kwargs: Any) -> fields.String:
    metadata = {"example": "SC-510100", **kwargs.pop("metadata", {})}
    if description:
        metadata["description"] = description
    return fields.String(
        validate=FullMatch(f"^{CODE_REGEX}$", error="not a library code like SC-510100"),
        metadata=metadata,
        **kwargs,
    )


def Barcode(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=FullMatch(
            f"^{BARCODE_REGEX}$",
            error="1–64 letters, digits, '.', '_', '~' or '-', starting with a letter or digit",
        ),
        metadata={"example": "510100000001", **kwargs.pop("metadata", {})},
        **kwargs,
    )


#: What a text field says when it meets a character it refuses.
_UNCLEAN = "control characters and unpaired surrogates are not allowed"


def _clean(char: str) -> FullMatch:
    return FullMatch(f"^{char}*$", error=_UNCLEAN)


def Clean(*, multiline: bool = False) -> FullMatch:
    """The validator of every text field: no control characters (tabs and line breaks only
    if ``multiline``) and no unpaired surrogates. For text with a default of its own."""
    return _clean(_MULTI_LINE if multiline else _ONE_LINE)


def Text(max_length: int = 200, *, multiline: bool = False, **kwargs: Any) -> fields.String:
    char = _MULTI_LINE if multiline else _ONE_LINE
    extra = kwargs.pop("validate", None)
    extra = [] if extra is None else extra if isinstance(extra, list) else [extra]
    return fields.String(
        validate=[validate.Length(min=1, max=max_length), _clean(char), *extra],
        **kwargs,
    )


def OptionalText(max_length: int, **kwargs: Any) -> fields.String:
    """Text that may be empty or null (a title, an ISBN)."""
    return fields.String(
        validate=[validate.Length(max=max_length), _clean(_ONE_LINE)],
        **{"load_default": None, "allow_none": True, **kwargs},
    )


def Count(low: int, high: int, **kwargs: Any) -> fields.Integer:
    """A JSON integer (strict: 5, not "5" or 5.0) within bounds."""
    return fields.Integer(strict=True, validate=validate.Range(low, high), **kwargs)


def Flag(**kwargs: Any) -> fields.Boolean:
    """A JSON boolean (strict: true, not "yes" or 1)."""
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


class Moment(fields.AwareDateTime):
    """An ISO 8601 moment with its UTC offset, within the years the ledger deals in."""

    default_error_messages = {  # noqa: RUF012 - marshmallow merges these per class
        "out_of_range": f"must fall in the years {EARLIEST_YEAR}–{LATEST_YEAR}",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        # Compare the local year: comparing aware datetimes near year 1 would overflow.
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise self.make_error("out_of_range")
        return moment


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE
        ordered = True


class CommandIn(Strict):
    occurred_at = Moment(
        load_default=None,
        metadata={
            "description": "when it happened at the desk (ISO 8601 with offset, e.g. "
            "2026-11-25T09:30:00+08:00); default now. May be earlier (an offline desk "
            "syncing), never later than the ledger's clock."
        },
    )


class PolicySchema(Strict):
    """A library's loan policy. Setting it replaces the whole policy: omitted fields
    take their defaults."""

    loan_days = Count(1, 365, load_default=30)
    renewals_allowed = Count(0, 10, load_default=1)
    renewal_days = Count(1, 365, load_default=30)
    return_mode = fields.String(
        load_default=ReturnMode.RETURN_TO_OWNER.value,
        validate=validate.OneOf([m.value for m in ReturnMode]),
        metadata={"description": "where an item returned at another library goes"},
    )


class LibraryIn(CommandIn):
    code = Code(required=True)
    name = Text(100, required=True)
    region = fields.String(required=True, validate=validate.OneOf([r.value for r in Region]))
    level = fields.String(required=True, validate=validate.OneOf([lv.value for lv in Level]))
    policy = fields.Nested(PolicySchema, load_default=lambda: PolicySchema().load({}))
    can_circulate = Flag(load_default=True)


class PolicyIn(CommandIn):
    policy = fields.Nested(PolicySchema, required=True)
    can_circulate = Flag(load_default=True)


class ItemRef(CommandIn):
    owner = Code(required=True, description="the owner library's code")
    barcode = Barcode(required=True)


class ItemIn(ItemRef):
    title = OptionalText(500)
    isbn = OptionalText(20)


class IdentityIn(Strict):
    document = fields.String(
        required=True,
        validate=validate.OneOf([d.value for d in DocumentKind]),
        metadata={"description": "the card shown; both carry the same number"},
    )
    number = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=40),
        metadata={
            "description": "the 18-character resident identity number (GB 11643-1999); "
            "only its keyed hash is kept, it is never stored, logged or returned",
            # GB 11643-1999's own published example (北京朝阳, 1949-12-31), not a person's
            "example": "11010519491231002X",
        },
    )


class CardIn(IdentityIn):
    """The card a reader shows at the desk, loaded as the command's ``ReaderCard``."""

    @post_load
    def card(self, data: dict[str, Any], **_: Any) -> ReaderCard:
        return ReaderCard(number=data["number"], document=data["document"])


class ReaderIn(IdentityIn, CommandIn):
    library = Code(required=True, data_key="home_library")


class LoanIn(ItemRef):
    library = Code(required=True, description="the lending desk")
    reader = fields.Nested(
        CardIn, load_default=None, metadata={"description": "the card the reader shows"}
    )
    reader_id = fields.UUID(load_default=None, allow_none=True)

    @validates_schema
    def one_reader(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("reader") is None) == (data.get("reader_id") is None):
            raise ValidationError("give exactly one of reader or reader_id", field_name="reader")


class AtLibrary(CommandIn):
    library = Code(required=True, description="the desk where it happened")


class ReturnIn(ItemRef):
    library = Code(required=True, description="the desk it is returned at")


class TransferIn(ItemRef):
    library = Code(required=True, data_key="from_library", description="the library holding it")
    to_library = Code(required=True)


class CancellationIn(AtLibrary):
    reason = fields.String(
        required=True, validate=validate.OneOf([r.value for r in TransferCancelReason])
    )
    note = Text(500, multiline=True, load_default="")


class ArrivalIn(AtLibrary):
    note = Text(500, multiline=True, load_default="")


class ReasonIn(AtLibrary):
    reason = Text(500, multiline=True, required=True)


class ChangesSchema(Strict):
    due_at = Moment()
    location = Code()
    title = OptionalText(500, load_default=ma.missing)
    isbn = OptionalText(20, load_default=ma.missing)


class CorrectionIn(AtLibrary):
    corrects_version = Count(
        1, 2**31 - 1, required=True, metadata={"description": "the item event it corrects"}
    )
    reason = Text(500, multiline=True, required=True)
    changes = fields.Nested(ChangesSchema, required=True)


# ------------------------------------------------------------------ responses

Instant = lambda **kw: fields.String(metadata={"format": "date-time"}, **kw)  # noqa: E731


class Recorded(ma.Schema):
    """What every command answers (a retry with the same Idempotency-Key gets the same)."""

    command_id = fields.String(
        metadata={"description": "the idempotency key this was recorded under"}
    )
    positions = fields.List(
        fields.Integer(), metadata={"description": "where its events sit in the log"}
    )
    receipt = fields.Dict(allow_none=True)


class PolicyOut(ma.Schema):
    loan_days = fields.Integer()
    renewals_allowed = fields.Integer()
    renewal_days = fields.Integer()
    return_mode = fields.String()


class LibraryOut(Recorded):
    code = fields.String()
    library_id = fields.String()
    policy = fields.Nested(PolicyOut)


class ItemOut(Recorded):
    item_id = fields.String()
    owner = fields.String()
    barcode = fields.String()


class ReaderOut(Recorded):
    reader_id = fields.String()
    masked_number = fields.String(metadata={"example": "1101**********002X"})
    home_library = fields.String(allow_none=True)
    created = fields.Boolean(
        metadata={"description": "false: the person was registered already (status 200)"}
    )


class LoanOut(Recorded):
    loan_id = fields.String()
    item_id = fields.String()
    reader_id = fields.String()
    due_at = Instant()


class RenewalOut(Recorded):
    loan_id = fields.String()
    due_at = Instant()
    renewals = fields.Integer()


class ReturnOut(Recorded):
    loan_id = fields.String()
    item_id = fields.String()
    disposition = fields.String(
        metadata={"description": "shelve | transfer_to_owner | float", "example": "shelve"}
    )
    borrowed_at = fields.String(metadata={"description": "the library that lent it"})
    owner = fields.String()


class TransferOut(Recorded):
    transfer_id = fields.String()
    item_id = fields.String()
    from_library = fields.String()
    to_library = fields.String()


class ItemEventOut(Recorded):
    item_id = fields.String()
    transfer_id = fields.String()
    loan_id = fields.String(allow_none=True)
    status = fields.String()
    at = fields.String()
    corrects_version = fields.Integer()


class LoanSchema(ma.Schema):
    loan_id = fields.String()
    reader_id = fields.String()
    library = fields.String()
    borrowed_at = fields.DateTime()
    due_at = fields.DateTime()
    renewals = fields.Integer()


class TransferSchema(ma.Schema):
    transfer_id = fields.String()
    from_library = fields.String()
    to_library = fields.String()
    dispatched_at = fields.DateTime()


class ItemState(ma.Schema):
    item_id = fields.String()
    owner = fields.String()
    barcode = fields.String()
    title = fields.String(allow_none=True)
    isbn = fields.String(allow_none=True)
    status = fields.String(
        metadata={
            "description": "on_shelf | on_loan | awaiting_transfer | in_transit | lost | withdrawn"
        }
    )
    location = fields.String(metadata={"description": "where it physically is or last was"})
    custodian = fields.String(metadata={"description": "the library responsible for it now"})
    destination = fields.String(
        allow_none=True, metadata={"description": "where an item awaiting transfer must go"}
    )
    since = fields.DateTime()
    version = fields.Integer(metadata={"description": "events in its stream"})
    loan = fields.Nested(LoanSchema, allow_none=True)
    transfer = fields.Nested(TransferSchema, allow_none=True)

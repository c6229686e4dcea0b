"""Request and response shapes. Unknown fields are refused (marshmallow's RAISE)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, validate, validates_schema

from ledger.domain.identity import DocumentKind
from ledger.domain.libraries import CODE_PATTERN, Level, Region, ReturnMode

Code = lambda **kw: fields.String(  # noqa: E731 - a field factory reads best as one line
    validate=validate.Regexp(CODE_PATTERN, error="not a library code like SC-510100"),
    metadata={"example": "SC-510100"},
    **kw,
)
Text = lambda max_len=200, **kw: fields.String(  # noqa: E731
    validate=validate.Length(min=1, max=max_len), **kw
)


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE
        ordered = True


class CommandIn(Strict):
    occurred_at = fields.AwareDateTime(
        load_default=None,
        metadata={
            "description": "when it happened at the desk (ISO 8601 with offset); default now"
        },
    )


class PolicySchema(Strict):
    loan_days = fields.Integer(load_default=30, validate=validate.Range(1, 365))
    renewals_allowed = fields.Integer(load_default=1, validate=validate.Range(0, 10))
    renewal_days = fields.Integer(load_default=30, validate=validate.Range(1, 365))
    return_mode = fields.String(
        load_default=ReturnMode.RETURN_TO_OWNER.value,
        validate=validate.OneOf([m.value for m in ReturnMode]),
    )


class LibraryIn(CommandIn):
    code = Code(required=True)
    name = Text(100, required=True)
    region = fields.String(required=True, validate=validate.OneOf([r.value for r in Region]))
    level = fields.String(required=True, validate=validate.OneOf([lv.value for lv in Level]))
    policy = fields.Nested(PolicySchema, load_default=lambda: PolicySchema().load({}))
    can_circulate = fields.Boolean(load_default=True)


class PolicyIn(CommandIn):
    policy = fields.Nested(PolicySchema, required=True)
    can_circulate = fields.Boolean(load_default=True)


class ItemRef(CommandIn):
    owner = Code(required=True)
    barcode = Text(64, required=True)


class ItemIn(ItemRef):
    title = fields.String(load_default=None, validate=validate.Length(max=500))
    isbn = fields.String(load_default=None, validate=validate.Length(max=20))


class IdentityIn(Strict):
    document = fields.String(
        required=True, validate=validate.OneOf([d.value for d in DocumentKind])
    )
    number = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=40),
        metadata={"description": "the 18-character number; never stored or returned"},
    )


class ReaderIn(IdentityIn, CommandIn):
    home_library = Code(required=True)


class LoanIn(ItemRef):
    library = Code(required=True)
    reader = fields.Nested(IdentityIn, load_default=None)
    reader_id = fields.UUID(load_default=None)

    @validates_schema
    def one_reader(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("reader") is None) == (data.get("reader_id") is None):
            raise ValidationError("give exactly one of reader or reader_id", field_name="reader")


class AtLibrary(CommandIn):
    library = Code(required=True)


class ReturnIn(ItemRef):
    library = Code(required=True)


class TransferIn(ItemRef):
    from_library = Code(required=True)
    to_library = Code(required=True)


class CancellationIn(AtLibrary):
    reason = fields.String(
        required=True,
        validate=validate.OneOf(["plan_changed", "dispatched_in_error", "other"]),
    )
    note = fields.String(load_default="", validate=validate.Length(max=500))


class ArrivalIn(AtLibrary):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class ReasonIn(AtLibrary):
    reason = Text(500, required=True)


class ChangesSchema(Strict):
    due_at = fields.AwareDateTime()
    location = Code()
    title = fields.String(validate=validate.Length(max=500))
    isbn = fields.String(validate=validate.Length(max=20))


class CorrectionIn(AtLibrary):
    corrects_version = fields.Integer(required=True, validate=validate.Range(min=1))
    reason = Text(500, required=True)
    changes = fields.Nested(ChangesSchema, required=True)


# ------------------------------------------------------------------ responses


class Recorded(ma.Schema):
    command_id = fields.String(
        metadata={"description": "the idempotency key this was recorded under"}
    )
    positions = fields.List(fields.Integer(), metadata={"description": "notification ids"})
    replayed = fields.Boolean(metadata={"description": "a retry answered from the first response"})
    receipt = fields.Dict(allow_none=True)


class LibraryOut(Recorded):
    code = fields.String()
    library_id = fields.String()


class ItemOut(Recorded):
    item_id = fields.String()
    owner = fields.String()
    barcode = fields.String()


class ReaderOut(Recorded):
    reader_id = fields.String()
    masked_number = fields.String()
    home_library = fields.String(allow_none=True)
    created = fields.Boolean()


class LoanOut(Recorded):
    loan_id = fields.String()
    item_id = fields.String()
    reader_id = fields.String()
    due_at = fields.String()


class RenewalOut(Recorded):
    loan_id = fields.String()
    due_at = fields.String()
    renewals = fields.Integer()


class ReturnOut(Recorded):
    loan_id = fields.String()
    item_id = fields.String()
    disposition = fields.String(metadata={"description": "shelve | transfer_to_owner | float"})
    borrowed_at = fields.String()
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
    status = fields.String()
    location = fields.String(metadata={"description": "where it physically is or last was"})
    custodian = fields.String(metadata={"description": "the library responsible for it now"})
    destination = fields.String(allow_none=True)
    since = fields.DateTime()
    version = fields.Integer()
    loan = fields.Nested(LoanSchema, allow_none=True)
    transfer = fields.Nested(TransferSchema, allow_none=True)

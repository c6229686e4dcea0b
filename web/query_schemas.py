"""Query parameters and responses of the read-model endpoints (``web.queries``).

Unknown parameters are refused (marshmallow's RAISE), like unknown fields of a command.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from ledger.domain.libraries import CODE_PATTERN
from ledger.projections.item_locations import STATUSES
from ledger.projections.paging import MAX_LIMIT
from web import schemas as s


def _code(description: str = "", **kwargs: object) -> fields.String:
    return fields.String(
        validate=validate.Regexp(CODE_PATTERN, error="not a library code like SC-510100"),
        metadata={"example": "SC-510100", "description": description},
        **kwargs,  # type: ignore[arg-type]
    )


class _Query(s.Strict):
    after = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0),
        metadata={
            "description": "read-your-writes: wait until the read model has folded this "
            "position (the highest of the `positions` a command returned)"
        },
    )


#: A cursor is base64 of a short JSON list (under 150 characters); a longer one is none the
#: API made, and decoding it could nest JSON deep enough to exhaust the recursion limit.
MAX_CURSOR = 512


class Cursor(fields.String):
    """``next_cursor`` of the previous page, checked as the values it carries.

    A cursor is the last row's sort key (``ledger.projections.paging``): each decoded value
    goes through the field it stands for (a library code, a barcode, a UUID, a moment with
    its offset), so a NUL or an unpaired surrogate never reaches the database: a value its
    field refuses is a 400 naming ``cursor``. A cursor that does not decode to a list of
    the right length is left to the ledger (422 ``invalid-input``: not one it returned).
    """

    default_error_messages = {  # noqa: RUF012 - marshmallow merges these per class
        "invalid_cursor": "cursor is not one this API returned: pass next_cursor unchanged",
    }

    def __init__(self, *key: fields.Field, **kwargs: Any) -> None:
        super().__init__(
            load_default=None,
            validate=validate.Length(max=MAX_CURSOR),
            metadata={"description": "next_cursor of the previous page"},
            **kwargs,
        )
        self.key = key

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        cursor = super()._deserialize(value, attr, data, **kwargs)
        if len(cursor) > MAX_CURSOR:
            raise self.make_error("invalid_cursor")
        try:
            values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except RecursionError:
            raise self.make_error("invalid_cursor") from None
        except (ValueError, TypeError, binascii.Error):
            return cursor  # the ledger refuses it (UnicodeDecodeError is a ValueError)
        if not isinstance(values, list) or len(values) != len(self.key):
            return cursor
        for field, item in zip(self.key, values, strict=True):
            try:
                field.deserialize(item)
            except ma.ValidationError:
                raise self.make_error("invalid_cursor") from None
        return cursor


def _moment() -> fields.AwareDateTime:
    """A sort key's moment as ``paging.encode`` writes it (ISO 8601 with its offset)."""
    return fields.AwareDateTime()


class _Paged(_Query):
    cursor = Cursor(s.Text(), s.Text())  # each listing says what its cursor carries
    limit = fields.Integer(load_default=None, validate=validate.Range(1, MAX_LIMIT))


class LoansQuery(_Paged):
    cursor = Cursor(_moment(), fields.UUID())  # due_at, item_id
    library = _code("the borrowing library", load_default=None)
    reader_id = fields.UUID(load_default=None)
    overdue = fields.Boolean(load_default=False)
    at = fields.AwareDateTime(
        load_default=None, metadata={"description": "overdue as of this instant (default now)"}
    )


class TransitsQuery(_Paged):
    cursor = Cursor(_moment(), fields.UUID())  # dispatched_at, item_id
    from_library = _code(data_key="from", load_default=None)
    to_library = _code(data_key="to", load_default=None)
    overdue = fields.Boolean(load_default=False)
    at = fields.AwareDateTime(load_default=None, metadata={"description": "age as of (now)"})


class LocationsQuery(_Paged):
    cursor = Cursor(s.Code(), s.Barcode())  # owner, barcode
    library = _code("the custodian library", load_default=None)
    owner = _code(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))


class ConsistencyQuery(_Query):
    pass


class HistoryQuery(_Query):
    as_of = fields.AwareDateTime(
        load_default=None, metadata={"description": "the state at this instant (ISO 8601)"}
    )
    basis = fields.String(
        load_default="occurred",
        validate=validate.OneOf(["occurred", "recorded"]),
        metadata={
            "description": "compare as_of with occurred_at (at the desk; late syncs can "
            "change a past answer) or recorded_at (what the ledger knew then)"
        },
    )


class HoldingsQuery(_Paged):
    cursor = Cursor(s.Code(), fields.UUID())  # owner, item_id
    as_of = fields.AwareDateTime(load_default=None, metadata={"description": "default now"})


# ------------------------------------------------------------------ responses


class _Page(ma.Schema):
    next_cursor = fields.String(allow_none=True)
    position = fields.Integer(metadata={"description": "the read model is up to this position"})


class LoanRow(ma.Schema):
    loan_id = fields.UUID()
    item_id = fields.UUID()
    owner = fields.String()
    barcode = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    library = fields.String(metadata={"description": "the borrowing library"})
    reader_id = fields.UUID()
    masked_number = fields.String(allow_none=True, metadata={"example": "5101**********123X"})
    borrowed_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime()
    renewals = fields.Integer()
    overdue = fields.Boolean()


class LoanPage(_Page):
    loans = fields.List(fields.Nested(LoanRow))


class TransitRow(ma.Schema):
    transfer_id = fields.UUID()
    item_id = fields.UUID()
    owner = fields.String()
    barcode = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    from_library = fields.String()
    to_library = fields.String()
    dispatched_at = fields.AwareDateTime()
    age_days = fields.Float()
    overdue = fields.Boolean()


class TransitPage(_Page):
    transits = fields.List(fields.Nested(TransitRow))
    overdue_after_days = fields.Integer()


class LocationRow(ma.Schema):
    item_id = fields.UUID()
    owner = fields.String()
    barcode = fields.String()
    title = fields.String(allow_none=True)
    status = fields.String()
    location = fields.String()
    custodian = fields.String()
    destination = fields.String(allow_none=True)
    loan_id = fields.UUID(allow_none=True)
    transfer_id = fields.UUID(allow_none=True)
    transfer_to = fields.String(allow_none=True)
    since = fields.AwareDateTime()
    version = fields.Integer()


class LocationPage(_Page):
    items = fields.List(fields.Nested(LocationRow))


class Counterparty(ma.Schema):
    library = fields.String()
    items = fields.Integer()


class Balance(ma.Schema):
    library = fields.String()
    own_at_home = fields.Integer()
    own_elsewhere = fields.Integer(metadata={"description": "floating or on loan elsewhere"})
    own_in_transit = fields.Integer()
    own_lost = fields.Integer()
    held_for_others = fields.Integer()
    net = fields.Integer(metadata={"description": "held_for_others - own_elsewhere"})
    held_from = fields.List(
        fields.Nested(Counterparty), metadata={"description": "others' items held here"}
    )
    held_by = fields.List(
        fields.Nested(Counterparty), metadata={"description": "own items held elsewhere"}
    )
    position = fields.Integer()


class Holding(ma.Schema):
    item_id = fields.UUID()
    owner = fields.String()
    barcode = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    held_as = fields.String(metadata={"description": "shelf | loan"})
    held_since = fields.AwareDateTime()


class HoldingPage(_Page):
    library = fields.String()
    as_of = fields.AwareDateTime()
    items = fields.List(fields.Nested(Holding))


class HistoryEvent(ma.Schema):
    version = fields.Integer()
    position = fields.Integer()
    event = fields.String(metadata={"example": "Item.Borrowed"})
    occurred_at = fields.AwareDateTime()
    effective_at = fields.AwareDateTime(
        metadata={"description": "occurred_at, never earlier than the previous event's"}
    )
    recorded_at = fields.AwareDateTime()
    library = fields.String(metadata={"description": "the acting library"})
    recorded_by = fields.String()
    command_id = fields.String()
    details = fields.Dict()
    state = fields.Dict(metadata={"description": "the item after this event"})


class AsOfState(ma.Schema):
    at = fields.AwareDateTime()
    basis = fields.String()
    existed = fields.Boolean()
    message = fields.String()
    version = fields.Integer(allow_none=True)
    state = fields.Dict(allow_none=True)


class HistoryOut(ma.Schema):
    item_id = fields.UUID()
    owner = fields.String()
    barcode = fields.String()
    events = fields.List(fields.Nested(HistoryEvent))
    as_of = fields.Nested(AsOfState, allow_none=True)

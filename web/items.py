"""Items: registration, current state, and what happens to them outside a loan."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.exceptions import NotFound

from ledger.domain.items import Item
from web import schemas as s
from web.recording import ledger, record

bp = Blueprint("items", __name__, url_prefix="/api/v1/items", description="Items (copies)")


@bp.route("")
class Items(MethodView):
    @bp.arguments(s.ItemIn)
    @bp.response(201, s.ItemOut)
    def post(self, body: dict[str, Any]):
        """Register an item at its owner library."""
        return record(ledger().register_item, **body)


@bp.route("/<owner>/<barcode>")
class ItemResource(MethodView):
    @bp.response(200, s.ItemState)
    def get(self, owner: str, barcode: str):
        """The item's current state and location, from its own event stream."""
        item = ledger().get_item(owner, barcode)
        if item is None:
            raise NotFound(f"no item {barcode} owned by {owner}")
        return state(item)


def state(item: Item) -> dict[str, Any]:
    loan = item.loan
    transfer = item.transfer
    return {
        "item_id": str(item.id),
        "owner": item.owner,
        "barcode": item.barcode,
        "title": item.title,
        "isbn": item.isbn,
        "status": str(item.status),
        "location": item.location,
        "custodian": item.custodian,
        "destination": item.destination,
        "since": item.since,
        "version": item.version,
        "loan": None
        if loan is None
        else {
            "loan_id": str(loan.loan_id),
            "reader_id": str(loan.reader_id),
            "library": loan.library,
            "borrowed_at": loan.borrowed_at,
            "due_at": loan.due_at,
            "renewals": loan.renewals,
        },
        "transfer": None
        if transfer is None
        else {
            "transfer_id": str(transfer.transfer_id),
            "from_library": transfer.from_library,
            "to_library": transfer.to_library,
            "dispatched_at": transfer.dispatched_at,
        },
    }


@bp.route("/<owner>/<barcode>/loss")
class Loss(MethodView):
    @bp.arguments(s.ReasonIn)
    @bp.response(201, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Declare the item lost (closes an open loan)."""
        return record(ledger().declare_lost, owner=owner, barcode=barcode, **body)


@bp.route("/<owner>/<barcode>/found")
class Found(MethodView):
    @bp.arguments(s.AtLibrary)
    @bp.response(201, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """A lost item turned up at this library."""
        return record(ledger().found, owner=owner, barcode=barcode, **body)


@bp.route("/<owner>/<barcode>/withdrawal")
class Withdrawal(MethodView):
    @bp.arguments(s.ReasonIn)
    @bp.response(201, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Withdraw the item from circulation (owner only)."""
        return record(ledger().withdraw, owner=owner, barcode=barcode, **body)


@bp.route("/<owner>/<barcode>/corrections")
class Corrections(MethodView):
    @bp.arguments(s.CorrectionIn)
    @bp.response(201, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Record a correcting event that names the version it corrects."""
        return record(ledger().correct, owner=owner, barcode=barcode, **body)


@bp.route("/<owner>/<barcode>/arrivals")
class Arrivals(MethodView):
    @bp.arguments(s.ArrivalIn)
    @bp.response(201, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """The item arrived here with no dispatch on record."""
        return record(ledger().receive_unannounced, owner=owner, barcode=barcode, **body)

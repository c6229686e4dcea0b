"""Items: registration, current state, and what happens to them outside a loan."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ledger import commands as c
from ledger.domain.errors import UnknownItem
from ledger.domain.items import Item
from web import schemas as s
from web.recording import Blueprint, ledger, record

bp = Blueprint("items", __name__, url_prefix="/api/v1/items", description="Items (copies)")

ITEM = "/<code:owner>/<barcode:barcode>"


@bp.route("")
class Items(MethodView):
    @bp.command(s.ItemIn, s.ItemOut)
    def post(self, body: dict[str, Any]):
        """Register an item at its owner library."""
        return record(c.RegisterItem, desk="owner", **body)


@bp.route(ITEM)
class ItemResource(MethodView):
    @bp.response(200, s.ItemState)
    @bp.alt_response(401, response="UNAUTHORIZED")
    @bp.alt_response(404, response="NOT_FOUND")
    def get(self, owner: str, barcode: str):
        """The item's current state and location, from its own event stream."""
        item = ledger().get_item(owner, barcode)
        if item is None:
            raise UnknownItem(f"no item {barcode} owned by {owner}", field="barcode")
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


@bp.route(f"{ITEM}/loss")
class Loss(MethodView):
    @bp.command(s.ReasonIn, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Declare the item lost (closes an open loan)."""
        return record(c.DeclareLost, owner=owner, barcode=barcode, **body)


@bp.route(f"{ITEM}/found")
class Found(MethodView):
    @bp.command(s.AtLibrary, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """A lost item turned up at this library."""
        return record(c.Found, owner=owner, barcode=barcode, **body)


@bp.route(f"{ITEM}/withdrawal")
class Withdrawal(MethodView):
    @bp.command(s.ReasonIn, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Withdraw the item from circulation (owner only; it must be lost or on its shelf)."""
        return record(c.Withdraw, owner=owner, barcode=barcode, **body)


@bp.route(f"{ITEM}/corrections")
class Corrections(MethodView):
    @bp.command(s.CorrectionIn, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """Record a correcting event that names the event (version) it corrects."""
        return record(c.Correct, owner=owner, barcode=barcode, **body)


@bp.route(f"{ITEM}/arrivals")
class Arrivals(MethodView):
    @bp.command(s.ArrivalIn, s.ItemEventOut)
    def post(self, body: dict[str, Any], owner: str, barcode: str):
        """The item arrived here with no dispatch on record."""
        return record(c.ReceiveUnannounced, owner=owner, barcode=barcode, **body)

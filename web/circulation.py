"""Readers, loans, renewals, returns and transfers: the desk's daily commands."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask.views import MethodView

from ledger import commands as c
from web import schemas as s
from web.recording import Blueprint, record

bp = Blueprint("circulation", __name__, url_prefix="/api/v1", description="Circulation")


@bp.route("/readers")
class Readers(MethodView):
    @bp.command(s.ReaderIn, s.ReaderOut, also=(200,))
    def post(self, body: dict[str, Any]):
        """Register a reader by resident ID or social security card (same number, same reader).

        Answers the reader id and the masked number only; a person registered already
        gets their reader id back with 200 and ``created: false``.
        """
        answer, status, headers = record(c.RegisterReader, field="home_library", **body)
        if answer.get("created") is False:
            status = 200
        return answer, status, headers


@bp.route("/loans")
class Loans(MethodView):
    @bp.command(s.LoanIn, s.LoanOut)
    def post(self, body: dict[str, Any]):
        """Borrow: the item must be on shelf at the borrowing library."""
        return record(c.Borrow, **body)


@bp.route("/loans/<uuid:loan_id>/renewals")
class Renewals(MethodView):
    @bp.command(s.AtLibrary, s.RenewalOut)
    def post(self, body: dict[str, Any], loan_id: UUID):
        """Renew a loan; answers the new due date."""
        return record(c.Renew, loan_id=loan_id, **body)


@bp.route("/returns")
class Returns(MethodView):
    @bp.command(s.ReturnIn, s.ReturnOut)
    def post(self, body: dict[str, Any]):
        """Return at any member library; the owner's policy decides the disposition."""
        return record(c.Return, **body)


@bp.route("/transfers")
class Transfers(MethodView):
    @bp.command(s.TransferIn, s.TransferOut)
    def post(self, body: dict[str, Any]):
        """Dispatch the item from the library holding it to another."""
        return record(c.Dispatch, field="from_library", **body)


@bp.route("/transfers/<uuid:transfer_id>/receipt")
class Receipt(MethodView):
    @bp.command(s.AtLibrary, s.ItemEventOut)
    def post(self, body: dict[str, Any], transfer_id: UUID):
        """The destination received the shipment."""
        return record(c.Receive, transfer_id=transfer_id, **body)


@bp.route("/transfers/<uuid:transfer_id>/cancellation")
class Cancellation(MethodView):
    @bp.command(s.CancellationIn, s.ItemEventOut)
    def post(self, body: dict[str, Any], transfer_id: UUID):
        """Cancel a shipment (a changed plan is a cancellation and a new dispatch)."""
        return record(c.CancelTransfer, transfer_id=transfer_id, **body)

"""Disputes: open, argue (statements, attachments), rule; list; evidence file; settlement.

A library's key sees the disputes it is a party to; the administrator sees all and
alone may rule. Commands go through ``record`` like every other command endpoint.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from ledger import commands as c
from ledger.disputes import evidence as ev
from ledger.disputes.queries import DEFAULT_LIMIT, MAX_LIMIT, list_disputes, settlement
from ledger.domain.disputes import ATTACHMENT_URI, DisputeKind
from ledger.domain.errors import NotADisputeParty
from ledger.jsonout import to_json
from web import schemas as s
from web.auth import actor, scope
from web.reading import eventlog
from web.recording import Blueprint, record

bp = Blueprint("disputes", __name__, url_prefix="/api/v1", description="Disputes between libraries")


class DisputeIn(s.ItemRef):
    library = s.Code(required=True, metadata={"description": "the library opening it"})
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in DisputeKind]))
    other_party = s.Code(required=True)
    statement = s.Text(4000, required=True)


class StatementIn(s.AtLibrary):
    text = s.Text(4000, required=True)


def _https_link(uri: str) -> str:
    """The domain's rule (``ATTACHMENT_URI``), as a 400 before the ledger sees the command."""
    if ATTACHMENT_URI.fullmatch(uri.strip()) is None:
        raise ma.ValidationError("an https:// link to the file (no other scheme)")
    return uri


class AttachmentIn(s.AtLibrary):
    uri = s.Text(
        2000,
        required=True,
        validate=_https_link,
        metadata={
            "description": "where the file is kept: an https:// link",
            "example": "https://files.example/sf123.pdf",
            "pattern": "^https://",
        },
    )
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-fA-F]{64}$"))
    description = fields.String(
        load_default="", validate=[validate.Length(max=500), s.Clean(multiline=True)]
    )


class ResolutionIn(s.CommandIn):
    liable_library = s.Code(load_default=None, allow_none=True)
    compensation = fields.String(
        load_default="0",
        validate=validate.Regexp(r"^\d{1,7}(\.\d{1,2})?$"),
        metadata={"description": 'CNY as a decimal string, e.g. "85.50" (never a number)'},
    )
    text = s.Text(4000, required=True)


class WithdrawalIn(s.CommandIn):
    reason = s.Text(500, required=True)


class ClaimIn(s.ItemRef):
    library = s.Code(required=True, metadata={"description": "the desk recording the claim"})
    returned_at = s.Code(required=True, metadata={"description": "where the reader says"})
    claimed_on = fields.Date(load_default=None)
    statement = fields.String(
        load_default="", validate=[validate.Length(max=4000), s.Clean(multiline=True)]
    )

    @ma.post_load
    def iso_date(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """The command carries the date as the reader named it, ISO 8601."""
        claimed_on: date | None = data["claimed_on"]
        return {**data, "claimed_on": claimed_on.isoformat() if claimed_on else None}


class ListQuery(s.Strict):
    open = fields.Boolean(load_default=False)
    library = s.Code(load_default=None)
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))
    before = fields.Integer(load_default=None, metadata={"description": "the previous `next`"})


class PeriodQuery(s.Strict):
    from_ = fields.Date(required=True, data_key="from")
    to = fields.Date(required=True)
    library = s.Code(load_default=None)


class DisputeOut(s.Recorded):
    dispute_id = fields.String()
    item_id = fields.String()
    kind = fields.String()
    status = fields.String()
    parties = fields.List(fields.String())
    statements = fields.Integer()
    attachments = fields.Integer()
    liable_library = fields.String(allow_none=True)
    compensation_cny = fields.String()


class ClaimOut(s.Recorded):
    claim_id = fields.String()
    item_id = fields.String()
    loan_id = fields.String()
    lending_library = fields.String()
    returned_at = fields.String()


class DisputeSummary(ma.Schema):
    dispute_id = fields.String()
    kind = fields.String()
    status = fields.String()
    owner = fields.String()
    barcode = fields.String()
    item_id = fields.String()
    opened_by = fields.String()
    other_party = fields.String()
    opened_at = fields.DateTime()
    automatic = fields.Boolean()
    trigger = fields.String(allow_none=True)
    statements = fields.Integer()
    attachments = fields.Integer()
    liable_library = fields.String(allow_none=True)
    compensation_cny = fields.String(allow_none=True)
    updated_at = fields.DateTime(allow_none=True)


class DisputePage(ma.Schema):
    disputes = fields.List(fields.Nested(DisputeSummary))
    next = fields.Integer(allow_none=True, metadata={"description": "cursor: pass as before"})


@bp.route("/disputes")
class Disputes(MethodView):
    @bp.arguments(ListQuery, location="query")
    @bp.response(200, DisputePage)
    def get(self, query: dict[str, Any]):
        """Disputes, newest first (a library's key: those it is a party to)."""
        return list_disputes(
            eventlog(),
            only_open=query["open"],
            library=scope(query["library"]),
            limit=query["limit"],
            before=query["before"],
        )

    @bp.command(DisputeIn, DisputeOut)
    def post(self, body: dict[str, Any]):
        """Open a dispute about one item against another library (both must have handled it)."""
        return record(c.OpenDispute, **body)


@bp.route("/disputes/<uuid:dispute_id>/statements")
class Statements(MethodView):
    @bp.command(StatementIn, DisputeOut)
    def post(self, body: dict[str, Any], dispute_id: UUID):
        """A party's statement (never edited: a correction is another statement)."""
        return record(c.AddStatement, dispute_id=dispute_id, **body)


@bp.route("/disputes/<uuid:dispute_id>/attachments")
class Attachments(MethodView):
    @bp.command(AttachmentIn, DisputeOut)
    def post(self, body: dict[str, Any], dispute_id: UUID):
        """Evidence by reference: where the file is, its SHA-256, what it shows."""
        return record(c.AddAttachment, dispute_id=dispute_id, **body)


@bp.route("/disputes/<uuid:dispute_id>/resolution")
class Resolution(MethodView):
    @bp.command(ResolutionIn, DisputeOut)
    def post(self, body: dict[str, Any], dispute_id: UUID):
        """The administrator's ruling: the liable party, compensation in CNY, reasons."""
        return record(c.ResolveDispute, dispute_id=dispute_id, **body)


@bp.route("/disputes/<uuid:dispute_id>/withdrawal")
class Withdrawal(MethodView):
    @bp.command(WithdrawalIn, DisputeOut)
    def post(self, body: dict[str, Any], dispute_id: UUID):
        """The opening library withdraws its dispute (the book turned up)."""
        return record(c.WithdrawDispute, dispute_id=dispute_id, **body)


@bp.route("/return-claims")
class ReturnClaims(MethodView):
    @bp.command(ClaimIn, ClaimOut)
    def post(self, body: dict[str, Any]):
        """A reader says the item on loan was returned at a library; if the loan is still
        open after LEDGER_CLAIM_DAYS, the sweep opens a claimed_returned dispute."""
        return record(c.ClaimReturned, **body)


def _json(value: dict[str, Any]) -> Response:
    """Times as ISO 8601 with offset, money as exact decimal strings."""
    return Response(to_json(value, indent=None), mimetype="application/json")


def _evidence(dispute_id: UUID) -> dict[str, Any]:
    log = eventlog()
    dispute = ev.load_dispute(log, dispute_id)
    own = actor().library
    if own is not None and own not in dispute.parties:
        raise NotADisputeParty(f"{own} is not a party to dispute {dispute_id}")
    return ev.build(log, dispute_id)


@bp.route("/disputes/<uuid:dispute_id>/evidence")
class Evidence(MethodView):
    @bp.response(200)
    def get(self, dispute_id: UUID):
        """The evidence file (JSON): the item's timeline, late uploads, last provable holder."""
        return _json(_evidence(dispute_id))


@bp.route("/disputes/<uuid:dispute_id>/evidence.html")
class EvidencePage(MethodView):
    @bp.response(200, content_type="text/html")
    def get(self, dispute_id: UUID):
        """The evidence file as a page to read, print or save (no script, no CDN)."""
        return Response(ev.render_html(_evidence(dispute_id)), mimetype="text/html")


@bp.route("/disputes/settlement")
class Settlement(MethodView):
    @bp.arguments(PeriodQuery, location="query")
    @bp.response(200)
    def get(self, query: dict[str, Any]):
        """Per pair of libraries: items lost in the other's custody, compensation resolved."""
        return _json(
            settlement(eventlog(), query["from_"], query["to"], library=scope(query["library"]))
        )

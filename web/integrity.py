"""Tamper evidence over HTTP: signed checkpoints, inclusion and consistency proofs, and
witnesses' confirmations. Reads are public (only sizes and hashes: anyone may audit);
confirming needs a key, so each confirmation names the member library that sent it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from marshmallow import fields, validate

from ledger.domain.errors import InvalidInput
from ledger.integrity.service import Integrity
from web import schemas as s
from web.auth import actor
from web.reading import eventlog
from web.recording import Blueprint

bp = Blueprint(
    "integrity",
    __name__,
    url_prefix="/api/v1",
    description="Tamper evidence: checkpoints, proofs, witnesses (README, Tamper evidence)",
)
PUBLIC = {"security": []}


def integrity() -> Integrity:
    found = current_app.extensions.get("tongjie.integrity")
    if found is None:
        found = Integrity(eventlog().connection)
        current_app.extensions["tongjie.integrity"] = found
    return found


#: Sizes and positions are PostgreSQL bigints; 0 and below pass, for their own answer.
_BIGINT = validate.Range(max=2**63 - 1)


def _int(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=False, validate=_BIGINT, **kwargs)


class CheckpointOut(ma.Schema):
    format = fields.String()
    ledger = fields.String(metadata={"description": "the ledger's id (receipts name it too)"})
    tree_size = fields.Integer()
    root_hash = fields.String(metadata={"description": "hex SHA-256 (RFC 9162 tree head)"})
    signed_at = fields.String()
    body = fields.String(metadata={"description": "the exact signed text (UTF-8)"})
    signature = fields.String(metadata={"description": "Ed25519 over body, base64"})
    public_key = fields.String(metadata={"description": "Ed25519, raw 32 bytes, base64"})
    key_fingerprint = fields.String(metadata={"description": "hex SHA-256 of the public key"})
    confirmations = fields.Integer(metadata={"description": "witnesses that confirmed it"})


class InclusionQuery(ma.Schema):
    position = _int(required=True, metadata={"description": "the event's notification id"})
    tree_size = _int(metadata={"description": "default: the latest checkpoint's"})


class InclusionOut(ma.Schema):
    format = fields.String()
    ledger = fields.String()
    position = fields.Integer()
    leaf_index = fields.Integer()
    leaf_hash = fields.String()
    tree_size = fields.Integer()
    root_hash = fields.String(metadata={"description": "where the path leads: compare it"})
    path = fields.List(fields.String(), metadata={"description": "RFC 9162 audit path, hex"})
    checkpoint = fields.Nested(CheckpointOut, allow_none=True)


class ConsistencyQuery(ma.Schema):
    from_size = _int(required=True, data_key="from", metadata={"description": "earlier size"})
    to_size = _int(data_key="to", metadata={"description": "default: the latest checkpoint's"})


class ConsistencyOut(ma.Schema):
    format = fields.String()
    ledger = fields.String()
    from_size = fields.Integer(data_key="from")
    to_size = fields.Integer(data_key="to")
    from_root = fields.String()
    to_root = fields.String()
    path = fields.List(fields.String())


class ConfirmationIn(ma.Schema):
    witness_key = fields.String(
        required=True, metadata={"description": "the witness's Ed25519 public key, base64"}
    )
    signature = fields.String(
        required=True,
        metadata={"description": "Ed25519 over 'tongjie witness v1\\n' + body, base64"},
    )
    witness_name = fields.String(load_default="", validate=[validate.Length(max=200), s.Clean()])


class ConfirmationOut(ma.Schema):
    tree_size = fields.Integer()
    witness_fingerprint = fields.String()
    witness_key = fields.String()
    signature = fields.String()
    witness_name = fields.String()
    recorded_by = fields.String()
    confirmed_at = fields.String()


def _checkpoint(size: int | None = None) -> dict[str, Any]:
    service = integrity()
    checkpoint = service.latest_checkpoint() if size is None else service.checkpoint(size)
    return {
        **checkpoint.as_dict(),
        "confirmations": len(service.confirmations(checkpoint.tree_size)),
    }


@bp.route("/checkpoints/latest")
class LatestCheckpoint(MethodView):
    @bp.doc(**PUBLIC)
    @bp.response(200, CheckpointOut)
    @bp.alt_response(404, response="NOT_FOUND")
    def get(self):
        """The newest signed checkpoint (tree size, root, time) with the ledger's public key."""
        return _checkpoint()


@bp.route("/checkpoints/<int(signed=True):size>")
class CheckpointAt(MethodView):
    @bp.doc(**PUBLIC)
    @bp.response(200, CheckpointOut)
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def get(self, size: int):
        """The checkpoint signed at this tree size."""
        return _checkpoint(size)


@bp.route("/checkpoints/<int(signed=True):size>/confirmations")
class Confirmations(MethodView):
    @bp.doc(**PUBLIC)
    @bp.response(200, ConfirmationOut(many=True))
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def get(self, size: int):
        """Witnesses that checked this checkpoint against the one they kept before."""
        return [c.as_dict() for c in integrity().confirmations(size)]

    @bp.arguments(ConfirmationIn)
    @bp.response(201, ConfirmationOut)
    @bp.alt_response(200, schema=ConfirmationOut, success=True)
    @bp.alt_response(400, response="BAD_REQUEST")
    @bp.alt_response(401, response="UNAUTHORIZED")
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
    @bp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
    @bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def post(self, body: dict[str, Any], size: int):
        """A witness confirms the checkpoint with its own Ed25519 signature (kept once)."""
        witness_key = _b64(body["witness_key"], "witness_key", 32)
        signature = _b64(body["signature"], "signature", 64)
        confirmation, created = integrity().confirm(
            size,
            witness_key=witness_key,
            signature=signature,
            witness_name=body["witness_name"],
            recorded_by=actor().principal,
        )
        return confirmation.as_dict(), 201 if created else 200


@bp.route("/proofs/inclusion")
class Inclusion(MethodView):
    @bp.doc(**PUBLIC)
    @bp.arguments(InclusionQuery, location="query")
    @bp.response(200, InclusionOut)
    @bp.alt_response(400, response="BAD_REQUEST")
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def get(self, query: dict[str, Any]):
        """The audit path of one event against a tree size (by default the latest
        checkpoint's), with that checkpoint when one was signed at that size."""
        proof, checkpoint = integrity().inclusion(query["position"], query.get("tree_size"))
        return {**proof.as_dict(), "checkpoint": checkpoint and checkpoint.as_dict()}


@bp.route("/proofs/consistency")
class Consistency(MethodView):
    @bp.doc(**PUBLIC)
    @bp.arguments(ConsistencyQuery, location="query")
    @bp.response(200, ConsistencyOut)
    @bp.alt_response(400, response="BAD_REQUEST")
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def get(self, query: dict[str, Any]):
        """That the tree of ``to`` events extends the tree of ``from`` events unchanged."""
        proof = integrity().consistency_proof(query["from_size"], query.get("to_size"))
        return {
            **proof.as_dict(),
            "from_size": proof.from_size,
            "to_size": proof.to_size,
        }


def _b64(value: str, name: str, length: int) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise InvalidInput(f"{name} must be {length} bytes in base64", field=name)
    return raw

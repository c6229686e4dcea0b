"""The one path every command endpoint takes: key → command_id, call, serialise."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import BadRequest

from ledger.application import Circulation, Result
from web.auth import actor

HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, as RFC drafts for the header suggest


def ledger() -> Circulation:
    return current_app.extensions["tongjie.ledger"]


def command_id() -> str | None:
    """The idempotency key, scoped to the API key so two desks never collide."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest(f"{HEADER} must be 1–200 visible ASCII characters")
    return f"{actor().principal}/{key}"


def record(
    call: Callable[..., Result], **arguments: Any
) -> tuple[dict[str, Any], int, dict[str, str]]:
    result = call(actor=actor(), command_id=command_id(), **arguments)
    return serialise(result), 201, {"Idempotent-Replayed": "true" if result.replayed else "false"}


def serialise(result: Result) -> dict[str, Any]:
    receipt = getattr(result, "receipt", None)
    if receipt is not None and hasattr(receipt, "as_dict"):
        receipt = receipt.as_dict()
    return {
        **result.outcome,
        "command_id": result.command_id,
        "positions": list(result.notification_ids),
        "replayed": result.replayed,
        "receipt": receipt,
    }

"""The one path every command endpoint takes: JSON body → one command → ``execute`` → 201.

``Blueprint.command`` wires and documents a command endpoint in one place: the body
schema (refused with 400 when it does not match), the ``Idempotency-Key`` header, the
201 answer with its ``Idempotent-Replayed`` header, and every error status a command
can meet. ``record`` builds the command value from the body (its fields carry the
command's names) with the key's actor and idempotency key, and hands it to the writer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, ClassVar, Protocol, TypeVar
from uuid import UUID

import flask
import flask_smorest
from flask import current_app, request
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest

from ledger import commands as c
from ledger.domain.errors import WrongLibrary
from ledger.write.result import Result
from web.auth import actor

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
#: Visible ASCII, as the IETF draft on the header suggests; long enough for a UUID and a prefix.
_KEY = re.compile(r"[\x21-\x7e]{1,200}")

#: What any command may answer besides its success (each is a problem+json; see web.problems).
COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422)

IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": "Makes the command safe to retry: the same key with the same body answers "
    "the first response (201, Idempotent-Replayed: true) and records nothing new; the same "
    "key with a different body is refused (422 idempotency-key-reused). Keys are scoped to "
    "the API key that sends them.",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,200}$"},
}

REPLAYED_HEADER = {
    "description": "true when a retry was answered from the first response",
    "schema": {"type": "string", "enum": ["true", "false"]},
}

F = TypeVar("F", bound=Callable[..., Any])


class LedgerParser(FlaskParser):
    """webargs' parser, refusing bodies the standard json module chokes on as malformed.

    ``json.loads`` raises RecursionError on deeply nested arrays and a plain ValueError on
    integers longer than Python's 4,300-digit limit; webargs catches neither. A body or
    query that does not match its schema is a 400 (``invalid-request-body``), and so the
    spec documents it; 422 is kept for rules the ledger refuses.
    """

    DEFAULT_VALIDATION_STATUS = 400
    #: webargs ignores unknown query parameters by default; here the schema decides, and
    #: every schema of ours refuses them (a mistyped filter must not silently widen a list).
    DEFAULT_UNKNOWN_BY_LOCATION: ClassVar[dict[str, str | None]] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as error:
            raise json.JSONDecodeError(
                f"unparseable JSON ({type(error).__name__})", "-", 0
            ) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = LedgerParser()

    def command(
        self, body: type, answer: type, *, status: int = 201, also: tuple[int, ...] = ()
    ) -> Callable[[F], F]:
        """Wire and document a command endpoint (see the module docstring)."""

        def decorate(view: F) -> F:
            wrapped = self.response(status, answer, headers={REPLAYED: REPLAYED_HEADER})(view)
            for extra in also:
                wrapped = self.alt_response(
                    extra, schema=answer, success=True, headers={REPLAYED: REPLAYED_HEADER}
                )(wrapped)
            for error in COMMAND_ERRORS:
                wrapped = self.alt_response(error, response=HTTPStatus(error).name)(wrapped)
            wrapped = self.arguments(body)(wrapped)
            return self.doc(parameters=[IDEMPOTENCY_PARAMETER])(wrapped)  # type: ignore[no-any-return]

        return decorate


class Ledger(Protocol):
    """What the web layer asks of the ledger: one command at a time, aggregate look-ups,
    and the connection pool its read models are queried through."""

    pool: Any

    def execute(self, command: c.Command) -> Result: ...
    def load(self, ids: Iterable[UUID]) -> dict[UUID, Any]: ...
    def get_item(self, owner: str, barcode: str) -> Any: ...


def ledger() -> Ledger:
    return current_app.extensions["tongjie.ledger"]


def command_id() -> str | None:
    """The idempotency key, scoped to the API key so two desks never collide."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise BadRequest(f"{HEADER} must be 1–200 visible ASCII characters")
    return f"{actor().principal}/{key}"


def record(
    command: type[c.Command],
    *,
    desk: str = "library",
    field: str | None = None,
    **arguments: Any,
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Build the command for the request's key and idempotency key, execute it, answer 201
    (first time) or the replay.

    ``desk`` names the argument that says where it happened, ``field`` the body field it
    came from (when the wire name differs). A library's key acting for another library is
    refused here, before anything is looked up, naming that field (the writer checks again).
    """
    who = actor()
    where = arguments.get(desk)
    if who.library is not None and where is not None and where != who.library:
        raise WrongLibrary(
            f"a key of {who.library} records only what happens at {who.library}, not at {where}",
            field=field or desk,
        )
    result = ledger().execute(command(actor=who, command_id=command_id(), **arguments))
    return serialise(result), 201, {REPLAYED: "true" if result.replayed else "false"}


def serialise(result: Result) -> dict[str, Any]:
    """The answer to a command; a retry's answer is the same, byte for byte."""
    receipt = getattr(result, "receipt", None)
    if receipt is not None and hasattr(receipt, "as_dict"):
        receipt = receipt.as_dict()
    return {
        **result.outcome,
        "command_id": result.command_id,
        "positions": list(result.notification_ids),
        "receipt": receipt,
    }

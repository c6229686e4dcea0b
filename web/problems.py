"""RFC 9457 problem details: every error the API returns, in one shape.

``type`` is a stable relative URI per error (``/problems/<code>``, which serves a
short description); clients branch on it, never on the prose in ``detail``.

Statuses: 400 the request does not match its published schema (malformed JSON, wrong
types, unknown or missing fields), 401 no valid key, 403 the key may not do this, 404
an unknown library, item, reader, loan or transfer, 409 the item or reader is in a
state that refuses the command (or another command won a race), 413 body too large,
415 not JSON, 422 well formed but a rule refuses it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Response, json
from werkzeug.exceptions import HTTPException

from ledger.domain import errors
from ledger.integrity import errors as integrity_errors

MEDIA_TYPE = "application/problem+json"

#: The HTTP status of each kind of refusal; an error takes the entry of its nearest class.
STATUS: dict[type[errors.DomainError], int] = {
    errors.DomainError: 422,
    errors.InvalidInput: 422,  # 400 is kept for requests that do not match the schema
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.StateConflict: 409,
    errors.RuleBroken: 422,
    errors.WrongLibrary: 403,
    errors.NotPermitted: 403,
    errors.NotADisputeParty: 403,
    errors.ProjectionBehind: 503,
    errors.ConcurrencyConflict: 409,
    errors.IdempotencyKeyReused: 422,
    integrity_errors.BeyondTreeSize: 404,
    integrity_errors.BadConfirmationSignature: 422,
    integrity_errors.SigningKeyMissing: 503,
}


def status_of(kind: type[errors.DomainError]) -> int:
    return next(STATUS[k] for k in kind.__mro__ if k in STATUS)


#: HTTP errors raised by the web layer itself, with their stable codes and meanings.
HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "The request is not valid JSON, or a header is malformed."),
    401: ("unauthenticated", "No valid API key: send Authorization: Bearer <key>."),
    403: ("forbidden", "The API key may not use this resource (administrator only)."),
    404: ("not-found", "No such resource path."),
    405: ("method-not-allowed", "The resource does not support this HTTP method."),
    406: ("not-acceptable", "The API answers only JSON."),
    413: ("body-too-large", "The request body is larger than a command can be."),
    415: ("unsupported-media-type", "Commands are JSON: send Content-Type: application/json."),
    429: ("too-many-requests", "Slow down and retry later."),
    500: ("internal-error", "The ledger failed; nothing was recorded. Retry with the same key."),
    503: ("unavailable", "The ledger cannot reach its database; retry later."),
}

#: A request body or query that does not match its schema (webargs/marshmallow).
INVALID_BODY = "invalid-request-body"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body, ensure_ascii=False), status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _title(code: str) -> str:
    return code.replace("-", " ").capitalize()


def from_domain(error: errors.DomainError) -> Response:
    return problem(
        status_of(type(error)), error.code, _title(error.code), error.message, field=error.field
    )


def from_http(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if isinstance(getattr(error, "exc", None), ma.ValidationError) and messages:
        flat = _flatten(messages)
        return problem(
            400,
            INVALID_BODY,
            "The request does not match its schema",
            "; ".join(f"{k}: {v}" for k, v in flat.items()),
            field=next(iter(flat), None),
            errors=flat,
        )
    if messages:  # webargs could not parse the body at all (not JSON)
        return problem(
            400,
            HTTP_CODES[400][0],
            "Malformed request",
            "the body is not valid JSON",
            field="body",
        )
    code = HTTP_CODES.get(status, ("error", ""))[0]
    detail = data.get("message") or error.description or error.name
    headers = dict(data.get("headers") or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="tongjie"')
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers.setdefault("Allow", ", ".join(error.valid_methods))  # type: ignore[attr-defined]
    return problem(status, code, error.name, str(detail), headers=headers)


def _flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """webargs nests errors by location and field; a problem names dotted fields."""
    out: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "headers", "path", "view_args", "form") and not prefix:
                out.update(_flatten(value, ""))
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
                out.update(_flatten(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "body"] = " ".join(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            out.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "body"] = str(messages)
    return out


class ProblemSchema(ma.Schema):
    """What every error response looks like (RFC 9457)."""

    type = ma.fields.String(
        required=True,
        metadata={
            "description": "stable per error: /problems/<code> describes it",
            "example": "/problems/item-not-available",
        },
    )
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True, metadata={"description": "for a librarian"})
    field = ma.fields.String(metadata={"description": "the offending input field"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "every offending field with its message"},
    )


def _domain_errors() -> list[type[errors.DomainError]]:
    found: list[type[errors.DomainError]] = []
    stack: list[type[errors.DomainError]] = [errors.DomainError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        found.append(cls)
    return found


def _meaning(cls: type[errors.DomainError]) -> str:
    """The first paragraph of the class's docstring, on one line."""
    paragraph = (cls.__doc__ or _title(cls.code)).strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def all_codes() -> dict[str, dict[str, Any]]:
    """Every stable problem code: its HTTP status and a line on what it means."""
    codes: dict[str, dict[str, Any]] = {}
    for cls in _domain_errors():
        codes[cls.code] = {"status": status_of(cls), "description": _meaning(cls)}
    for status, (code, meaning) in HTTP_CODES.items():
        codes.setdefault(code, {"status": status, "description": meaning})
    codes[INVALID_BODY] = {
        "status": 400,
        "description": "The body does not match its schema: a missing, unknown or mistyped "
        "field, or a value outside what the schema allows; `field` and `errors` name them.",
    }
    return dict(sorted(codes.items()))


def responses_by_status() -> dict[int, str]:
    """For the OpenAPI spec: which problem types each error status carries."""
    by_status: dict[int, list[str]] = {}
    for code, info in all_codes().items():
        by_status.setdefault(info["status"], []).append(code)
    return {
        status: f"{HTTPStatus(status).phrase}. Problem types: "
        + ", ".join(f"/problems/{code}" for code in sorted(codes))
        for status, codes in sorted(by_status.items())
    }

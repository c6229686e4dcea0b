"""RFC 9457 problem details: every error the API returns, in one shape.

``type`` is a stable relative URI per error (``/problems/<code>``, which serves a
short description); clients branch on it, never on the prose in ``detail``.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, json
from werkzeug.exceptions import HTTPException

from ledger.domain import errors

MEDIA_TYPE = "application/problem+json"

#: HTTP errors raised by Flask/Werkzeug themselves, with their stable codes.
HTTP_CODES = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


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
    return problem(error.status, error.code, _title(error.code), error.message, field=error.field)


def from_http(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages") or data.get("errors")
    if messages:  # webargs: the request did not match its schema
        flat = _flatten(messages)
        first_field = next(iter(flat), None)
        detail = "; ".join(f"{k}: {v}" for k, v in flat.items())
        return problem(
            400,
            "invalid-request-body" if status == 422 else HTTP_CODES.get(status, "error"),
            "Malformed request" if status == 400 else "The request does not match its schema",
            detail,
            field=first_field,
            errors=flat,
        )
    code = HTTP_CODES.get(status, "error")
    detail = data.get("message") or error.description or error.name
    headers = dict(data.get("headers") or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="tongjie"')
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
    """What every error response looks like (documented in the OpenAPI spec)."""

    type = ma.fields.String(required=True, metadata={"example": "/problems/item-not-available"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    field = ma.fields.String(metadata={"description": "the offending input field"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.String(), metadata={"description": "per field"}
    )


def all_codes() -> dict[str, str]:
    """Every stable problem code with a line on what it means."""
    codes: dict[str, str] = {}
    stack: list[type[errors.DomainError]] = [errors.DomainError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        codes[cls.code] = (cls.__doc__ or _title(cls.code)).strip().splitlines()[0]
    for status, code in HTTP_CODES.items():
        codes.setdefault(code, f"HTTP {status}")
    codes["invalid-request-body"] = "The request body or query does not match its schema."
    return dict(sorted(codes.items()))

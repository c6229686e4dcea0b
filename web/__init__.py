"""The HTTP API: parse (marshmallow) → one ledger call → serialise.

``create_app`` builds the app around the ledger (its writer and pool); nothing happens at import.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from http import HTTPStatus
from typing import Any, NoReturn

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.routing import BaseConverter

from ledger.domain.errors import DomainError
from web import problems
from web.auth import load_actor
from web.recording import Ledger
from web.schemas import BARCODE_REGEX, CODE_REGEX

#: A desk's command is a few hundred bytes; anything near this is not a command.
MAX_BODY_BYTES = 64 * 1024
#: How much of an oversized body is read (and dropped) so that its 413 arrives on a live
#: connection; a larger one is cut off (its client may see a reset instead).
DRAIN_BYTES = 1024 * 1024

log = logging.getLogger("web")


class LibraryCode(BaseConverter):
    """A library code in a path: anything else is no route (404), never a lookup."""

    regex = CODE_REGEX


class Barcode(BaseConverter):
    regex = BARCODE_REGEX


class LedgerApi(Api):
    """flask-smorest's Api, answering and documenting every error as RFC 9457 problem+json."""

    ERROR_SCHEMA = problems.ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return problems.from_http(error)

    def _register_responses(self) -> None:
        described = problems.responses_by_status()
        for status in HTTPStatus:
            if status < 400:
                continue
            response = {
                "description": described.get(status, status.phrase),
                "content": {problems.MEDIA_TYPE: {"schema": self.ERROR_SCHEMA}},
            }
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response(
            self.DEFAULT_ERROR_RESPONSE_NAME,
            {
                "description": "An error (RFC 9457 problem details)",
                "content": {problems.MEDIA_TYPE: {"schema": self.ERROR_SCHEMA}},
            },
            lazy=True,
        )


def create_app(ledger: Ledger, **config: Any) -> Flask:
    app = Flask("tongjie")
    app.config.update(
        API_TITLE="tongjie circulation ledger",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/static/",  # served from the swagger-ui-bundle wheel
        # Swagger UI would otherwise send the spec to validator.swagger.io for a badge.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "info": {
                "description": "Every borrow, renewal, return and transfer of the consortium, "
                "recorded as immutable events. Send `Authorization: Bearer <key>` (keys come "
                "from `tongjie keys create`). Commands are POSTs with a JSON body and an "
                "optional `Idempotency-Key`. Errors are RFC 9457 problem+json with a stable "
                "`type`; /problems lists them."
            },
        },
    )
    app.config.update(config)
    app.extensions["tongjie.ledger"] = ledger
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["code"] = LibraryCode
    app.url_map.converters["barcode"] = Barcode

    api = LedgerApi(app)
    api.register_converter(LibraryCode, lambda _: {"type": "string", "pattern": f"^{CODE_REGEX}$"})
    api.register_converter(Barcode, lambda _: {"type": "string", "pattern": f"^{BARCODE_REGEX}$"})
    app.before_request(load_actor)
    app.before_request(_check_body)
    app.after_request(_security_headers)
    app.register_error_handler(DomainError, problems.from_domain)
    app.register_error_handler(Exception, _unexpected)

    from web import (
        circulation,
        disputes,
        docs,
        health,
        integrity,
        items,
        libraries,
        queries,
        reports,
    )

    for module in (
        libraries,
        items,
        circulation,
        health,
        docs,
        queries,
        integrity,
        reports,
        disputes,
    ):
        api.register_blueprint(module.bp)
    app.register_blueprint(docs.assets)
    return app


#: Every page the API serves (the evidence file, the circulation report, JSON opened in a
#: browser tab) is self-contained: inline styles and data: images, no script, no fetch, no
#: form, never framed.
STRICT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
#: Swagger UI (/docs): its script and CSS from /docs/static, its one inline start-up script
#: by hash, the spec and "try it out" requests to this origin.
DOCS_CSP = (
    "default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _security_headers(response: Response) -> Response:
    """No response is sniffed into another type; every one carries a Content-Security-Policy
    (a page may run only what it needs: nothing, except Swagger UI on /docs)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = STRICT_CSP
    if request.endpoint == "api-docs.openapi_swagger_ui" and response.mimetype == "text/html":
        scripts = ["'self'", *map(_script_hash, _INLINE_SCRIPT.findall(response.get_data(True)))]
        response.headers["Content-Security-Policy"] = DOCS_CSP.format(scripts=" ".join(scripts))
    return response


def _script_hash(script: str) -> str:
    """The CSP source that lets exactly this inline script run."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


def _check_body() -> None:
    """Commands are JSON within MAX_BODY_BYTES; anything else is refused before it is parsed."""
    if request.method not in ("POST", "PUT", "PATCH") or request.url_rule is None:
        return
    if not request.is_json:
        raise UnsupportedMediaType("send the command as JSON (Content-Type: application/json)")
    size = request.content_length
    if size is not None and size > MAX_BODY_BYTES:
        _refuse_too_large()
    # Werkzeug silently cuts a chunked body at the limit: one that reaches it is refused
    # (reading it here also caches it for the parser).
    if size is None and len(request.get_data(cache=True)) >= MAX_BODY_BYTES:
        _refuse_too_large()


def _refuse_too_large() -> NoReturn:
    """413, after reading what is left of a moderately large body: otherwise the server
    closes the connection with bytes unread, and a client still sending sees a reset
    instead of the answer."""
    stream = request.environ.get("wsgi.input")
    left = DRAIN_BYTES
    while stream is not None and left > 0:
        chunk = stream.read(min(64 * 1024, left))
        if not chunk:
            break
        left -= len(chunk)
    raise RequestEntityTooLarge(f"a command is at most {MAX_BODY_BYTES // 1024} KiB")


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return problems.from_http(error)
    # The traceback names code, not values: no request body (no identity number) is logged.
    log.exception("unexpected error on %s %s", request.method, request.path)
    code, meaning = problems.HTTP_CODES[500]
    return problems.problem(500, code, "Internal error", meaning)

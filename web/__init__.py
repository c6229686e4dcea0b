"""The HTTP API: parse (marshmallow) → one ledger call → serialise.

``create_app`` builds the app around a ``Circulation``; nothing happens at import.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from ledger.application import Circulation
from ledger.domain.errors import DomainError
from web import problems
from web.auth import load_actor

#: A desk's command is a few hundred bytes; anything near this is not a command.
MAX_BODY_BYTES = 64 * 1024


class LedgerApi(Api):
    """flask-smorest's Api, answering every error as RFC 9457 problem+json."""

    ERROR_SCHEMA = problems.ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return problems.from_http(error)


def create_app(ledger: Circulation, **config: Any) -> Flask:
    app = Flask("tongjie")
    app.config.update(
        API_TITLE="tongjie circulation ledger",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "info": {
                "description": "Every borrow, renewal, return and transfer of the consortium, "
                "recorded as immutable events. Errors are RFC 9457 problem+json."
            },
        },
    )
    app.config.update(config)
    app.extensions["tongjie.ledger"] = ledger
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    api = LedgerApi(app)
    app.before_request(load_actor)
    app.register_error_handler(DomainError, problems.from_domain)
    app.register_error_handler(Exception, _unexpected)

    from web import circulation, docs, health, items, libraries

    for module in (libraries, items, circulation, health):
        api.register_blueprint(module.bp)
    for optional in _optional_blueprints():
        api.register_blueprint(optional)
    app.register_blueprint(docs.bp)
    return app


def _optional_blueprints() -> list[Any]:
    """Blueprints of features that live in their own modules (queries, integrity, reports)."""
    found = []
    for name in ("web.queries", "web.integrity", "web.reports", "web.disputes"):
        try:
            module = __import__(name, fromlist=["bp"])
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        found.append(module.bp)
    return found


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return problems.from_http(error)
    import logging

    logging.getLogger("web").exception("unexpected error")
    return problems.problem(
        500, "internal-error", "Internal error", "the ledger failed; nothing was recorded"
    )

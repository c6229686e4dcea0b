"""The HTTP API under test: a Flask test client with real keys, on a real database.

``web_api(dsn)`` builds the app around a ``Circulation`` (as ``tongjie serve`` does in
each worker), creates an administrator key and one desk key per test library, and
registers the test consortium through ``POST /api/v1/libraries``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ledger.application import Circulation
from ledger.keys import create_key
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, LIBRARIES, identity_number
from web import create_app
from web.problems import MEDIA_TYPE

ADMIN_KEY = "admin"


@dataclass
class Api:
    app: Flask
    ledger: Circulation
    dsn: str
    tokens: dict[str, str] = field(default_factory=dict)  # "admin" or a library code → token

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def headers(self, key: str | None, idempotency: str | None = None) -> dict[str, str]:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(key, key)}"
        if idempotency is not None:
            headers["Idempotency-Key"] = idempotency
        return headers

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = CHENGDU,
        idempotency: str | None = None,
        **kwargs: Any,
    ) -> TestResponse:
        """POST a JSON body (or raw ``data=``/``content_type=`` passed through)."""
        headers = {**self.headers(key, idempotency), **kwargs.pop("headers", {})}
        if "data" not in kwargs:
            kwargs["json"] = body
        return self.client.post(f"/api/v1{path}", headers=headers, **kwargs)

    def get(self, path: str, *, key: str | None = CHENGDU, **kwargs: Any) -> TestResponse:
        headers = {**self.headers(key), **kwargs.pop("headers", {})}
        return self.client.get(f"/api/v1{path}", headers=headers, **kwargs)

    # ------------------------------------------------------ common scenarios

    def item(self, owner: str, barcode: str, title: str = "三体") -> TestResponse:
        response = self.post(
            "/items", {"owner": owner, "barcode": barcode, "title": title}, key=owner
        )
        assert response.status_code == 201, response.get_json()
        return response

    def reader(self, sequence: int, home: str = CHENGDU) -> str:
        response = self.post(
            "/readers",
            {"document": "resident_id", "number": identity_number(sequence), "home_library": home},
            key=home,
        )
        assert response.status_code == 201, response.get_json()
        return str(response.get_json()["reader_id"])

    def borrow(self, owner: str, barcode: str, reader_id: str, at: str) -> dict[str, Any]:
        response = self.post(
            "/loans",
            {"owner": owner, "barcode": barcode, "reader_id": reader_id, "library": at},
            key=at,
        )
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    def state(self, owner: str, barcode: str) -> dict[str, Any]:
        response = self.get(f"/items/{owner}/{barcode}")
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())


@contextmanager
def web_api(
    dsn: str, *, join: bool = True, config: dict[str, Any] | None = None, **ledger_options: Any
) -> Iterator[Api]:
    ledger = open_ledger(dsn, **ledger_options)
    try:
        app = create_app(ledger, **(config or {}))
        app.testing = True
        api = Api(app, ledger, dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            api.tokens[ADMIN_KEY] = create_key(conn, library=None, label="test admin")[1]
            for code in LIBRARIES:
                api.tokens[code] = create_key(conn, library=code, label=f"desk {code}")[1]
        if join:
            for code, spec in LIBRARIES.items():
                body = {"code": code, **{k: v for k, v in spec.items()}}
                response = api.post("/libraries", body, key=ADMIN_KEY)
                assert response.status_code == 201, response.get_json()
        yield api
    finally:
        ledger.close()


@contextmanager
def projection_worker(dsn: str) -> Iterator[None]:
    """The read models' live worker in a thread, as ``tongjie serve`` runs it beside the API
    (nothing to run in a ledger without read models)."""
    try:
        from ledger.projections.runner import LiveRunner
    except ModuleNotFoundError:
        yield
        return
    stop = threading.Event()
    runner = LiveRunner(dsn)
    thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        runner.close()


def assert_problem(
    response: TestResponse, status: int, code: str, *, field: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem with this status and stable type (and the offending field)."""
    body = response.get_json(force=True)
    assert response.status_code == status, body
    assert response.mimetype == MEDIA_TYPE, response.mimetype
    assert body["type"] == f"/problems/{code}", body
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return dict(body)

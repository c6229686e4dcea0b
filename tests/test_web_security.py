"""Keys, personal data and the public pages: who may do what, and what never leaks."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ledger.keys import authenticate, create_key, revoke
from tests.helpers import CHENGDU, YUZHONG, identity_number, now, stream, wrong_check_char
from tests.web_support import ADMIN_KEY, Api, assert_problem, web_api
from web.problems import MEDIA_TYPE


@pytest.fixture
def api(dsn: str) -> Iterator[Api]:
    with web_api(dsn) as api:
        yield api


def test_no_identity_number_reaches_a_response_or_a_log_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    number = identity_number(21)
    bad = wrong_check_char(identity_number(22))
    texts = []
    api.item(CHENGDU, "C1")
    for response in [
        api.post(
            "/readers", {"document": "resident_id", "number": number, "home_library": CHENGDU}
        ),
        api.post(
            "/readers",
            {"document": "social_security_card", "number": number, "home_library": CHENGDU},
        ),
        api.post("/readers", {"document": "resident_id", "number": bad, "home_library": CHENGDU}),
        api.post(  # a desk key acting elsewhere: refused, still nothing echoed
            "/readers", {"document": "resident_id", "number": number, "home_library": YUZHONG}
        ),
        api.post(
            "/loans",
            {
                "owner": CHENGDU,
                "barcode": "C1",
                "library": CHENGDU,
                "reader": {"document": "resident_id", "number": number},
            },
        ),
        api.post(
            "/loans",
            {
                "owner": CHENGDU,
                "barcode": "C1",
                "library": CHENGDU,
                "reader": {"document": "resident_id", "number": identity_number(23)},
            },
        ),
        api.post(  # the number where a barcode belongs
            "/returns", {"owner": CHENGDU, "barcode": number, "library": CHENGDU, "n": number}
        ),
        api.get(f"/items/{CHENGDU}/C1"),
    ]:
        assert response.status_code < 500
        texts.append(response.get_data(as_text=True))
    everything = "\n".join(texts) + "\n" + caplog.text
    for secret in (number, bad, identity_number(23)):
        assert secret not in everything
        assert secret[6:14] not in everything  # not even the birth date
    assert f"{number[:4]}**********{number[-4:]}" in texts[0]


def test_a_library_key_sees_a_reader_only_as_id_and_masked_number(api: Api) -> None:
    api.item(CHENGDU, "C1")
    reader = api.post(
        "/readers",
        {"document": "resident_id", "number": identity_number(24), "home_library": CHENGDU},
    ).get_json()
    assert set(reader) >= {"reader_id", "masked_number"}
    assert "number" not in reader and "identity_hmac" not in reader
    api.borrow(CHENGDU, "C1", reader["reader_id"], CHENGDU)
    loan = api.state(CHENGDU, "C1")["loan"]
    assert loan["reader_id"] == reader["reader_id"]
    assert set(loan) == {"loan_id", "reader_id", "library", "borrowed_at", "due_at", "renewals"}


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    assert api.get(f"/items/{CHENGDU}/C1").status_code == 404  # the key works
    key_id = api.tokens[CHENGDU].split("_")[1]
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        assert revoke(conn, key_id)
    assert_problem(api.get(f"/items/{CHENGDU}/C1"), 401, "unauthenticated")


def test_keys_are_stored_hashed(api: Api) -> None:
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        key, token = create_key(conn, library=CHENGDU)
        rows = conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key.key_id,)).fetchall()
        assert authenticate(conn, token) is not None
    secret = token.split("_", 2)[2]
    assert secret.encode() not in repr(rows).encode()
    assert all(secret not in str(value) for row in rows for value in row)


def test_events_name_the_key_that_recorded_them(api: Api) -> None:
    response = api.post("/items", {"owner": CHENGDU, "barcode": "C2"})
    key_id = api.tokens[CHENGDU].split("_")[1]
    events = stream(api.ledger, api.ledger.get_item(CHENGDU, "C2").id)
    assert events[0].recorded_by == f"key:{key_id}"
    assert response.get_json()["command_id"].startswith("auto-")


def test_the_administrator_may_act_at_any_desk(api: Api) -> None:
    response = api.post("/items", {"owner": YUZHONG, "barcode": "Y1"}, key=ADMIN_KEY)
    assert response.status_code == 201


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs", "/problems"])
def test_public_pages_need_no_key(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 200


def test_the_api_reference_works_offline(api: Api) -> None:
    page = api.client.get("/docs").get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "a CDN URL in /docs"
    assets = re.findall(r"(?:src|href)=\"(/docs/static/[^\"]+)\"", page)
    assert len(assets) >= 2
    for asset in assets:
        response = api.client.get(asset)
        assert response.status_code == 200 and len(response.get_data()) > 1000, asset
    assert '"validatorUrl": null' in page  # no badge fetched from validator.swagger.io


def test_health_reports_the_database_and_the_log_position(api: Api) -> None:
    body = api.client.get("/healthz").get_json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert body["position"] >= 4  # the four libraries joined
    for lag in body.get("projections", {}).values():
        assert lag["behind"] >= 0


def test_health_is_503_problem_when_the_database_is_gone(dsn: str) -> None:
    with web_api(dsn, join=False) as api:
        assert api.client.get("/healthz").status_code == 200
        params = conninfo_to_dict(dsn)
        server = {**params, "dbname": "postgres"}
        with psycopg.connect(**server, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(params["dbname"]))
            )
        response = api.client.get("/healthz")
        assert_problem(response, 503, "unavailable")
        assert "dbname" not in response.get_data(as_text=True)


def test_the_spec_documents_every_route_of_the_issue_and_its_errors(api: Api) -> None:
    spec = api.client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    commands = [
        "/api/v1/libraries",
        "/api/v1/items",
        "/api/v1/readers",
        "/api/v1/loans",
        "/api/v1/loans/{loan_id}/renewals",
        "/api/v1/returns",
        "/api/v1/transfers",
        "/api/v1/transfers/{transfer_id}/receipt",
        "/api/v1/items/{owner}/{barcode}/loss",
        "/api/v1/items/{owner}/{barcode}/found",
        "/api/v1/items/{owner}/{barcode}/withdrawal",
        "/api/v1/items/{owner}/{barcode}/corrections",
    ]
    for path in commands:
        operation = paths[path]["post"]
        for status in ("400", "401", "403", "404", "409", "413", "415", "422"):
            assert status in operation["responses"], (path, status)
        assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][body.rsplit("/", 1)[1]]
        assert schema.get("additionalProperties") is False, path  # unknown fields refused
    assert "get" in paths["/api/v1/items/{owner}/{barcode}"]
    for name in ("BAD_REQUEST", "NOT_FOUND", "CONFLICT", "UNPROCESSABLE_ENTITY"):
        response = spec["components"]["responses"][name]
        assert list(response["content"]) == [MEDIA_TYPE]
    assert (
        "/problems/item-not-available" in spec["components"]["responses"]["CONFLICT"]["description"]
    )
    assert (
        "/problems/invalid-identity-number"
        in (spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]["description"])
    )


def test_a_future_desk_clock_within_the_skew_is_accepted(api: Api) -> None:
    soon = (now() + timedelta(seconds=30)).isoformat()
    assert (
        api.post("/items", {"owner": CHENGDU, "barcode": "S1", "occurred_at": soon}).status_code
        == 201
    )

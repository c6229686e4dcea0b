"""Every error over HTTP: RFC 9457 problem+json, a stable type, the status that fits, the
offending field, and nothing recorded. No input, however odd, gets a 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.domain import errors
from tests.conftest import open_ledger
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    MEIGU,
    YUZHONG,
    count_events,
    identity_number,
    now,
    wrong_check_char,
)
from tests.web_support import ADMIN_KEY, Api, assert_problem, web_api
from web import MAX_BODY_BYTES, create_app
from web.problems import MEDIA_TYPE, all_codes, status_of


@pytest.fixture
def api(dsn: str) -> Iterator[Api]:
    with web_api(dsn) as api:
        yield api


def refused(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert_problem(response, status, code, field=field)


@pytest.fixture
def on_loan(api: Api) -> dict[str, Any]:
    """Item C1 of 成都, on loan at 成都."""
    api.item(CHENGDU, "C1")
    return api.borrow(CHENGDU, "C1", api.reader(1), CHENGDU)


# ------------------------------------------------------------------ 400


def test_a_body_that_is_not_json_is_malformed(api: Api) -> None:
    for raw in (b"{", b"owner=SC-510100", b"\xff\xfe{}", b"[" * 30_000 + b"]" * 30_000):
        response = api.post("/returns", data=raw, content_type="application/json")
        assert_problem(response, 400, "malformed-request", field="body")


def test_an_integer_beyond_pythons_digit_limit_is_malformed(api: Api) -> None:
    raw = b'{"library": "SC-510100", "corrects_version": ' + b"9" * 5000 + b"}"
    response = api.post(
        f"/items/{CHENGDU}/C1/corrections", data=raw, content_type="application/json"
    )
    assert_problem(response, 400, "malformed-request")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/returns", {"owner": CHENGDU, "barcode": 12345, "library": CHENGDU}, "barcode"),
        ("/returns", {"owner": CHENGDU, "barcode": "C1"}, "library"),
        ("/returns", {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU, "x": 1}, "x"),
        ("/returns", {"owner": "SC-51O100", "barcode": "C1", "library": CHENGDU}, "owner"),
        ("/returns", {"owner": f"{CHENGDU}\n", "barcode": "C1", "library": CHENGDU}, "owner"),
        ("/returns", {"owner": "SC-٥١٠١٠٠", "barcode": "C1", "library": CHENGDU}, "owner"),
        ("/returns", {"owner": CHENGDU, "barcode": "../C1", "library": CHENGDU}, "barcode"),
        ("/returns", {"owner": CHENGDU, "barcode": "C\x001", "library": CHENGDU}, "barcode"),
        ("/returns", [CHENGDU, "C1"], "_schema"),
        ("/items", {"owner": CHENGDU, "barcode": "C9", "title": "a\x00b"}, "title"),
        ("/items", {"owner": CHENGDU, "barcode": "C9", "title": "x" * 501}, "title"),
        (
            "/items",
            {"owner": CHENGDU, "barcode": "C9", "occurred_at": "2026-01-01T09:00"},
            "occurred_at",
        ),
        (
            "/items",
            {"owner": CHENGDU, "barcode": "C9", "occurred_at": "0001-01-01T00:00:00+14:00"},
            "occurred_at",
        ),
        (
            "/items",
            {"owner": CHENGDU, "barcode": "C9", "occurred_at": "9999-12-31T23:59:59-14:00"},
            "occurred_at",
        ),
        (
            "/items",
            {"owner": CHENGDU, "barcode": "C9", "occurred_at": "2026-01-01T09:00+99:00"},
            "occurred_at",
        ),
        ("/items", {"owner": CHENGDU, "barcode": "C9", "occurred_at": 1700000000}, "occurred_at"),
        ("/loans", {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU}, "reader"),
        (
            "/loans",
            {
                "owner": CHENGDU,
                "barcode": "C1",
                "library": CHENGDU,
                "reader_id": str(uuid4()),
                "reader": {"document": "resident_id", "number": identity_number(1)},
            },
            "reader",
        ),
        (
            "/loans",
            {
                "owner": CHENGDU,
                "barcode": "C1",
                "library": CHENGDU,
                "reader": {"document": "passport", "number": "1"},
            },
            "reader.document",
        ),
        (
            "/loans",
            {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU, "reader_id": 7},
            "reader_id",
        ),
        (
            f"/items/{CHENGDU}/C1/corrections",
            {"library": CHENGDU, "corrects_version": "1", "reason": "r", "changes": {}},
            "corrects_version",
        ),
        (
            f"/items/{CHENGDU}/C1/corrections",
            {"library": CHENGDU, "corrects_version": 1.0, "reason": "r", "changes": {}},
            "corrects_version",
        ),
        (
            f"/items/{CHENGDU}/C1/corrections",
            {"library": CHENGDU, "corrects_version": 10**40, "reason": "r", "changes": {}},
            "corrects_version",
        ),
        (
            f"/items/{CHENGDU}/C1/corrections",
            {
                "library": CHENGDU,
                "corrects_version": 1,
                "reason": "r",
                "changes": {"owner": CHENGDU},
            },
            "changes.owner",
        ),
        (f"/items/{CHENGDU}/C1/loss", {"library": CHENGDU, "reason": "\ud800"}, "reason"),
    ],
)
def test_a_body_that_does_not_match_its_schema_names_the_field(
    api: Api, path: str, body: Any, field: str
) -> None:
    before = count_events(api.dsn)
    # json.dumps escapes what the test client cannot encode (an unpaired surrogate).
    response = api.post(path, data=json.dumps(body), content_type="application/json")
    problem = assert_problem(response, 400, "invalid-request-body", field=field)
    assert field in problem["errors"]
    assert count_events(api.dsn) == before


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"loan_days": "30"}, "policy.loan_days"),
        ({"loan_days": 0}, "policy.loan_days"),
        ({"loan_days": float("nan")}, "policy.loan_days"),
        ({"return_mode": "teleport"}, "policy.return_mode"),
        ({"fines": 1}, "policy.fines"),
    ],
)
def test_policy_values_are_checked_strictly(api: Api, policy: dict[str, Any], field: str) -> None:
    response = api.post(
        f"/libraries/{CHENGDU}/policy",
        data=json.dumps({"policy": policy}),  # json.dumps writes NaN, as a careless client might
        content_type="application/json",
        key=ADMIN_KEY,
    )
    assert_problem(response, 400, "invalid-request-body", field=field)


def test_a_flag_must_be_a_json_boolean(api: Api) -> None:
    response = api.post(
        f"/libraries/{CHENGDU}/policy", {"policy": {}, "can_circulate": "yes"}, key=ADMIN_KEY
    )
    assert_problem(response, 400, "invalid-request-body", field="can_circulate")


def test_a_malformed_idempotency_key_is_refused(api: Api) -> None:
    for key in ("", "x" * 201, "with space"):
        response = api.post("/items", {"owner": CHENGDU, "barcode": "C5"}, idempotency=key)
        assert_problem(response, 400, "malformed-request")
    assert api.get(f"/items/{CHENGDU}/C5").status_code == 404


# ------------------------------------------------------------------ 401 / 403


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer tj_nothing", "Bearer tj_\x00_x"],
)
def test_a_request_without_a_valid_key_is_unauthenticated(
    api: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.client.get(f"/api/v1/items/{CHENGDU}/C1", headers=headers)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_right_key_id_with_a_wrong_secret_is_unauthenticated(api: Api) -> None:
    token = api.tokens[CHENGDU]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = api.get(f"/items/{CHENGDU}/C1", key=forged)
    assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/items", {"owner": YUZHONG, "barcode": "Y1"}),
        (
            "/readers",
            {"document": "resident_id", "number": identity_number(2), "home_library": YUZHONG},
        ),
        (
            "/loans",
            {"owner": CHENGDU, "barcode": "C1", "library": YUZHONG, "reader_id": str(uuid4())},
        ),
        ("/returns", {"owner": CHENGDU, "barcode": "C1", "library": YUZHONG}),
        (
            "/transfers",
            {"owner": CHENGDU, "barcode": "C1", "from_library": YUZHONG, "to_library": CHENGDU},
        ),
        (f"/transfers/{uuid4()}/receipt", {"library": YUZHONG}),
        (f"/transfers/{uuid4()}/cancellation", {"library": YUZHONG, "reason": "other"}),
        (f"/loans/{uuid4()}/renewals", {"library": YUZHONG}),
        (f"/items/{CHENGDU}/C1/loss", {"library": YUZHONG, "reason": "r"}),
        (f"/items/{CHENGDU}/C1/found", {"library": YUZHONG}),
        (f"/items/{CHENGDU}/C1/withdrawal", {"library": YUZHONG, "reason": "r"}),
        (f"/items/{CHENGDU}/C1/arrivals", {"library": YUZHONG}),
        (
            f"/items/{CHENGDU}/C1/corrections",
            {"library": YUZHONG, "corrects_version": 1, "reason": "r", "changes": {"title": "t"}},
        ),
    ],
)
def test_a_library_key_records_only_at_its_own_desk(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    api.item(CHENGDU, "C1")
    before = count_events(api.dsn)
    response = api.post(path, body, key=CHENGDU)
    field = {"/items": "owner", "/readers": "home_library", "/transfers": "from_library"}
    assert_problem(response, 403, "wrong-library", field=field.get(path, "library"))
    assert count_events(api.dsn) == before


def test_only_the_administrator_registers_libraries_and_sets_policy(api: Api) -> None:
    body = {"code": "CQ-500101", "name": "万州区图书馆", "region": "chongqing", "level": "county"}
    assert_problem(api.post("/libraries", body, key=CHENGDU), 403, "forbidden")
    # A desk is refused before its body is even read.
    assert_problem(api.post("/libraries", {"junk": 1}, key=CHENGDU), 403, "forbidden")
    assert_problem(
        api.post(f"/libraries/{CHENGDU}/policy", {"policy": {}}, key=CHENGDU), 403, "forbidden"
    )


def test_only_the_owner_withdraws_an_item(api: Api) -> None:
    _awaiting_at(api, YUZHONG, "C7")
    response = api.post(
        f"/items/{CHENGDU}/C7/withdrawal", {"library": YUZHONG, "reason": "r"}, key=YUZHONG
    )
    assert_problem(response, 403, "not-permitted", field="library")


# ------------------------------------------------------------------ 404


def test_unknown_things_are_404_with_their_own_type(api: Api, on_loan: dict[str, Any]) -> None:
    refused(api.get(f"/items/{CHENGDU}/NOPE"), 404, "unknown-item", "barcode")
    refused(
        api.post(f"/items/{CHENGDU}/NOPE/loss", {"library": CHENGDU, "reason": "r"}),
        404,
        "unknown-item",
        "barcode",
    )
    refused(
        api.post(f"/loans/{uuid4()}/renewals", {"library": CHENGDU}),
        404,
        "unknown-loan",
        "loan_id",
    )
    refused(
        api.post(f"/transfers/{uuid4()}/receipt", {"library": CHENGDU}),
        404,
        "unknown-transfer",
        "transfer_id",
    )
    api.item(CHENGDU, "C2")
    refused(
        api.post(
            "/loans",
            {"owner": CHENGDU, "barcode": "C2", "library": CHENGDU, "reader_id": str(uuid4())},
        ),
        404,
        "unknown-reader",
    )
    refused(
        api.post(
            "/loans",
            {
                "owner": CHENGDU,
                "barcode": "C2",
                "library": CHENGDU,
                "reader": {"document": "resident_id", "number": identity_number(99)},
            },
        ),
        404,
        "unknown-reader",
        "reader",
    )
    refused(
        api.post(
            "/transfers",
            {"owner": CHENGDU, "barcode": "C2", "from_library": CHENGDU, "to_library": "CQ-500101"},
        ),
        404,
        "unknown-library",
        "to_library",
    )
    refused(
        api.post("/libraries/CQ-500101/policy", {"policy": {}}, key=ADMIN_KEY),
        404,
        "unknown-library",
    )


@pytest.mark.parametrize(
    "path",
    [
        "/items/SC-51010/C1",  # not a library code
        "/items/SC-510100/..",
        "/items/SC-510100/%00",
        "/items/SC-510100/%E4%B8%AD",
        "/items/SC-510100/" + "x" * 65,
        "/loans/not-a-uuid",
        "/nothing-here",
    ],
)
def test_a_path_that_names_nothing_is_404(api: Api, path: str) -> None:
    assert_problem(api.get(path), 404, "not-found")


def test_a_wrong_method_is_405_with_allow(api: Api) -> None:
    response = api.client.delete("/api/v1/returns", headers=api.headers(CHENGDU))
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


# ------------------------------------------------------------------ 409


def _awaiting_at(api: Api, library: str, barcode: str) -> None:
    api.item(CHENGDU, barcode)
    api.borrow(CHENGDU, barcode, api.reader(3), CHENGDU)
    api.post("/returns", {"owner": CHENGDU, "barcode": barcode, "library": library}, key=library)


def test_state_conflicts_are_409(api: Api, on_loan: dict[str, Any]) -> None:
    reader = on_loan["reader_id"]
    borrow = {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU, "reader_id": reader}
    refused(api.post("/loans", borrow), 409, "item-not-available", "barcode")
    api.item(CHENGDU, "C2")
    refused(
        api.post("/returns", {"owner": CHENGDU, "barcode": "C2", "library": CHENGDU}),
        409,
        "item-not-on-loan",
        "barcode",
    )
    refused(api.post(f"/items/{CHENGDU}/C2/found", {"library": CHENGDU}), 409, "item-not-lost")
    refused(api.post("/items", {"owner": CHENGDU, "barcode": "C2"}), 409, "duplicate-item")
    refused(
        api.post(
            "/libraries",
            {"code": CHENGDU, "name": "成都市图书馆", "region": "sichuan", "level": "prefecture"},
            key=ADMIN_KEY,
        ),
        409,
        "duplicate-library",
        "code",
    )


def test_an_item_in_transit_cannot_be_lent(api: Api) -> None:
    _awaiting_at(api, YUZHONG, "T1")
    api.post(
        "/transfers",
        {"owner": CHENGDU, "barcode": "T1", "from_library": YUZHONG, "to_library": CHENGDU},
        key=YUZHONG,
    )
    reader = api.reader(4)
    response = api.post(
        "/loans", {"owner": CHENGDU, "barcode": "T1", "library": CHENGDU, "reader_id": reader}
    )
    refused(response, 409, "item-in-transit", "barcode")


def test_a_withdrawn_item_and_a_library_that_does_not_circulate_are_409(api: Api) -> None:
    api.item(CHENGDU, "W1")
    api.post(f"/items/{CHENGDU}/W1/withdrawal", {"library": CHENGDU, "reason": "damaged"})
    reader = api.reader(5)
    response = api.post(
        "/loans", {"owner": CHENGDU, "barcode": "W1", "library": CHENGDU, "reader_id": reader}
    )
    refused(response, 409, "item-withdrawn")
    api.item(MEIGU, "M1")
    response = api.post(
        "/loans",
        {"owner": MEIGU, "barcode": "M1", "library": MEIGU, "reader_id": reader},
        key=MEIGU,
    )
    refused(response, 409, "library-not-circulating", "library")


def race(calls: list[Any]) -> list[Any]:
    """Run the calls at the same moment, one thread each; their answers in order."""
    gate = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        gate.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_borrows_of_one_item_from_two_processes_never_both_succeed(dsn: str) -> None:
    """Two apps with their own ledgers (as two gunicorn workers): one wins, one gets a 409."""
    with web_api(dsn) as first:
        second_app = create_app(open_ledger(dsn))
        try:
            readers = [first.reader(10), first.reader(11)]
            for round_ in range(5):
                barcode = f"RACE{round_}"
                first.item(CHENGDU, barcode)
                calls = [
                    lambda app=app, reader=reader, barcode=barcode: app.test_client().post(
                        "/api/v1/loans",
                        json={
                            "owner": CHENGDU,
                            "barcode": barcode,
                            "library": CHENGDU,
                            "reader_id": reader,
                        },
                        headers=first.headers(CHENGDU),
                    )
                    for app, reader in zip((first.app, second_app), readers, strict=True)
                ]
                answers = race(calls)
                statuses = sorted(a.status_code for a in answers)
                assert statuses == [201, 409], [a.get_json() for a in answers]
                loser = next(a for a in answers if a.status_code == 409)
                assert loser.mimetype == MEDIA_TYPE
                assert loser.get_json()["type"] in (
                    "/problems/item-not-available",
                    "/problems/conflict",
                )
                assert first.state(CHENGDU, barcode)["status"] == "on_loan"
        finally:
            second_app.extensions["tongjie.ledger"].close()


# ------------------------------------------------------------------ 413 / 415


def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    body = json.dumps({"owner": CHENGDU, "barcode": "C1", "title": "x" * MAX_BODY_BYTES})
    response = api.post("/items", data=body, content_type="application/json")
    assert_problem(response, 413, "body-too-large")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_command_that_is_not_json_is_415(api: Api, content_type: str | None) -> None:
    body = json.dumps({"owner": CHENGDU, "barcode": "C1"})
    response = api.post("/items", data=body, content_type=content_type)
    assert_problem(response, 415, "unsupported-media-type")


# ------------------------------------------------------------------ 422


def test_an_invalid_identity_number_is_422_and_never_echoed(api: Api) -> None:
    for number in (
        wrong_check_char(identity_number(8)),
        "51010419800101001",
        "5101041980010100１X",
    ):
        response = api.post(
            "/readers", {"document": "resident_id", "number": number, "home_library": CHENGDU}
        )
        assert_problem(response, 422, "invalid-identity-number", field="number")
        assert number not in response.get_data(as_text=True)
        assert number[:17] not in response.get_data(as_text=True)


def test_a_moment_in_the_future_is_422(api: Api) -> None:
    later = (now() + timedelta(hours=1)).isoformat()
    response = api.post("/items", {"owner": CHENGDU, "barcode": "F1", "occurred_at": later})
    assert_problem(response, 422, "occurred-in-future", field="occurred_at")


def test_broken_rules_are_422(dsn: str) -> None:
    with web_api(dsn, loan_limit=1) as api:
        api.item(CHENGDU, "C1")
        api.item(CHENGDU, "C2")
        reader = api.reader(9)
        loan = api.borrow(CHENGDU, "C1", reader, CHENGDU)
        response = api.post(
            "/loans", {"owner": CHENGDU, "barcode": "C2", "library": CHENGDU, "reader_id": reader}
        )
        assert_problem(response, 422, "reader-over-limit")

        renew = f"/loans/{loan['loan_id']}/renewals"
        assert api.post(renew, {"library": CHENGDU}).status_code == 201
        assert_problem(
            api.post(renew, {"library": CHENGDU}), 422, "renewal-not-allowed", field="loan_id"
        )

        response = api.post(
            "/transfers",
            {"owner": CHENGDU, "barcode": "C2", "from_library": CHENGDU, "to_library": CHENGDU},
        )
        assert_problem(response, 422, "invalid-input", field="to_library")
        response = api.post(
            f"/items/{CHENGDU}/C2/corrections",
            {"library": CHENGDU, "corrects_version": 9, "reason": "r", "changes": {"title": "t"}},
        )
        assert_problem(response, 422, "invalid-input", field="corrects_version")


# ------------------------------------------------------------------ problem types


def test_every_problem_type_is_described_at_its_uri(api: Api) -> None:
    listed = api.client.get("/problems").get_json()
    codes = {entry["type"].removeprefix("/problems/") for entry in listed}
    stack: list[type[errors.DomainError]] = [errors.DomainError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        assert cls.code in codes
    for code, info in all_codes().items():
        response = api.client.get(f"/problems/{code}")
        assert response.status_code == 200
        assert response.get_json() == {"type": f"/problems/{code}", **info}
        assert info["description"]
    assert_problem(api.client.get("/problems/no-such-thing"), 404, "not-found")


def test_every_domain_error_status_is_one_the_issue_names() -> None:
    for info in all_codes().values():
        assert info["status"] in {400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 429, 500, 503}
    assert status_of(errors.InvalidIdentityNumber) == 422
    assert status_of(errors.WrongLibrary) == 403
    assert status_of(errors.ConcurrencyConflict) == 409


# ------------------------------------------------------------------ no 500, ever

ROUTES = [
    "/libraries",
    f"/libraries/{CHENGDU}/policy",
    "/items",
    "/readers",
    "/loans",
    f"/loans/{uuid4()}/renewals",
    "/returns",
    "/transfers",
    f"/transfers/{uuid4()}/receipt",
    f"/transfers/{uuid4()}/cancellation",
    f"/items/{CHENGDU}/C1/loss",
    f"/items/{CHENGDU}/C1/found",
    f"/items/{CHENGDU}/C1/withdrawal",
    f"/items/{CHENGDU}/C1/corrections",
    f"/items/{JINJIANG}/J1/arrivals",
]

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(st.characters(exclude_categories=()))  # unpaired surrogates and NUL too
    | st.sampled_from([CHENGDU, YUZHONG, "C1", "2026-01-01T00:00:00+08:00", identity_number(1)]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "owner",
                    "barcode",
                    "library",
                    "reader",
                    "reader_id",
                    "number",
                    "document",
                    "occurred_at",
                    "policy",
                    "changes",
                    "reason",
                    "code",
                    "name",
                    "title",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=6,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(ROUTES),
    body=st.one_of(_json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain"]
    ),
    key=st.sampled_from([CHENGDU, ADMIN_KEY]),
)
def test_no_input_gets_a_server_error(
    api: Api, route: str, body: bytes, content_type: str, key: str
) -> None:
    response = api.post(route, data=body, content_type=content_type, key=key)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == MEDIA_TYPE

"""Disputes over HTTP: the same rules, as problem+json; keys see only their own disputes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from ledger import commands as c
from ledger.keys import create_key
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, JINJIANG, YUZHONG, desk, join_all, now, register_item
from tests.helpers import register_reader as reader
from web import create_app


@pytest.fixture
def api(dsn: str) -> Iterator[Any]:
    ledger = open_ledger(dsn)
    join_all(ledger)
    register_item(ledger, CHENGDU, "W1")
    rid = reader(ledger, 3)
    ledger.execute(
        c.Borrow(owner=CHENGDU, barcode="W1", library=CHENGDU, reader_id=rid, actor=desk(CHENGDU))
    )
    ledger.execute(c.Return(owner=CHENGDU, barcode="W1", library=YUZHONG, actor=desk(YUZHONG)))
    ledger.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode="W1",
            library=YUZHONG,
            to_library=CHENGDU,
            actor=desk(YUZHONG),
            occurred_at=now() - timedelta(minutes=5),
        )
    )
    tokens = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for who in (CHENGDU, YUZHONG, JINJIANG, None):
            tokens[who or "admin"] = create_key(conn, library=who)[1]
    client = create_app(ledger).test_client()

    def call(method: str, path: str, key: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {tokens[key]}", **kw.pop("headers", {})}
        return client.open(f"/api/v1{path}", method=method, json=body, headers=headers, **kw)

    yield call
    ledger.close()


def test_dispute_over_http(api: Any) -> None:
    opened = api(
        "POST",
        "/disputes",
        CHENGDU,
        {
            "owner": CHENGDU,
            "barcode": "W1",
            "library": CHENGDU,
            "kind": "not_received",
            "other_party": YUZHONG,
            "statement": "没有收到",
        },
        headers={"Idempotency-Key": "open-1"},
    )
    assert opened.status_code == 201, opened.get_json()
    dispute = opened.get_json()["dispute_id"]

    outsider = api(
        "POST", f"/disputes/{dispute}/statements", JINJIANG, {"library": JINJIANG, "text": "hi"}
    )
    assert outsider.status_code == 403
    assert outsider.get_json()["type"] == "/problems/not-a-dispute-party"
    assert outsider.headers["Content-Type"].startswith("application/problem+json")

    ok = api(
        "POST", f"/disputes/{dispute}/statements", YUZHONG, {"library": YUZHONG, "text": "寄出了"}
    )
    assert ok.status_code == 201 and ok.get_json()["statements"] == 2

    by_desk = api(
        "POST",
        f"/disputes/{dispute}/resolution",
        YUZHONG,
        {"liable_library": CHENGDU, "compensation": "10.00", "text": "mine"},
    )
    assert by_desk.status_code == 403
    assert by_desk.get_json()["type"] == "/problems/administrator-only"
    as_number = api(
        "POST",
        f"/disputes/{dispute}/resolution",
        "admin",
        {"liable_library": YUZHONG, "compensation": 10.5, "text": "x"},
    )
    assert as_number.status_code in (400, 422)  # money is a decimal string, never a number

    assert api("GET", "/disputes", JINJIANG).get_json()["disputes"] == []
    assert len(api("GET", "/disputes?open=true", YUZHONG).get_json()["disputes"]) == 1

    assert api("GET", f"/disputes/{dispute}/evidence", JINJIANG).status_code == 403
    evidence = api("GET", f"/disputes/{dispute}/evidence", YUZHONG).get_json()
    assert evidence["last_provable_holder"]["library"] == YUZHONG
    recorded = datetime.fromisoformat(evidence["timeline"][-1]["recorded_at"])
    assert recorded.utcoffset() is not None  # ISO 8601 with offset, not an HTTP date
    page = api("GET", f"/disputes/{dispute}/evidence.html", "admin")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "provably held" in page.get_data(as_text=True)

    ruled = api(
        "POST",
        f"/disputes/{dispute}/resolution",
        "admin",
        {"liable_library": YUZHONG, "compensation": "42.00", "text": "no proof of delivery"},
    )
    assert ruled.status_code == 201 and ruled.get_json()["compensation_cny"] == "42.00"
    bad = api("GET", "/disputes/settlement?from=2026-02-01&to=2026-01-01", "admin")
    assert bad.status_code == 422 and bad.get_json()["type"] == "/problems/invalid-input"
    sheet = api("GET", "/disputes/settlement?from=2000-01-01&to=2100-01-01", CHENGDU).get_json()
    assert sheet["scope"] == CHENGDU and sheet["total_compensation_cny"] == "42.00"

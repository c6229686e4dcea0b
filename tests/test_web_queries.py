"""The read-model endpoints over HTTP (Flask test client, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from ledger import commands as c
from ledger.application import Circulation
from ledger.keys import create_key
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, JINJIANG, YUZHONG, desk
from tests.test_projections import circulate, fold
from web import create_app


@pytest.fixture
def app(dsn: str) -> Iterator[Circulation]:
    ledger = open_ledger(dsn)
    yield ledger
    ledger.close()


@pytest.fixture
def client(app: Circulation, dsn: str) -> Iterator[FlaskClient]:
    flask_app = create_app(app, TESTING=True, LEDGER_READ_WAIT=0.3, LEDGER_TRANSIT_OVERDUE_DAYS=3)
    yield flask_app.test_client()


def key(dsn: str, library: str | None) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, library=library, label="test")
    return {"Authorization": f"Bearer {token}"}


def get(client: FlaskClient, url: str, headers: dict[str, str], status: int = 200) -> Any:
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def test_loans_by_library_reader_and_overdue_with_cursor_pages(
    client: FlaskClient, app: Circulation, dsn: str
) -> None:
    story = circulate(app)
    r1 = story.readers["r1"]
    for n in range(3):  # three more loans at Chengdu, due in 14 days at Jinjiang... and here
        app.execute(c.RegisterItem(owner=CHENGDU, barcode=f"P{n}", actor=desk(CHENGDU)))
        app.execute(
            c.Borrow(
                owner=CHENGDU, barcode=f"P{n}", library=CHENGDU, reader_id=r1, actor=desk(CHENGDU)
            )
        )
    fold(dsn)
    h = key(dsn, CHENGDU)
    body = get(client, f"/api/v1/loans?library={CHENGDU}", h)
    assert len(body["loans"]) == 4 and body["next_cursor"] is None
    assert {loan["reader_id"] for loan in body["loans"]} == {str(r1)}
    assert all(set(loan) >= {"masked_number", "barcode", "due_at"} for loan in body["loans"])
    assert all("number" not in loan and "identity" not in str(loan) for loan in body["loans"])
    assert body["loans"][0]["masked_number"].count("*") == 10

    pages, cursor = [], None
    while True:
        url = f"/api/v1/loans?reader_id={r1}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = get(client, url, h)
        pages.append(page["loans"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 1]
    due = [loan["due_at"] for p in pages for loan in p]
    assert due == sorted(due)

    later = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    overdue = get(client, "/api/v1/loans?overdue=true&at=" + later.replace("+", "%2B"), h)
    assert {loan["barcode"] for loan in overdue["loans"]} == {"P0", "P1", "P2"}  # C1 extended
    assert all(loan["overdue"] for loan in overdue["loans"])
    assert get(client, "/api/v1/loans?overdue=true", h)["loans"] == []


def test_bad_queries_are_problems(client: FlaskClient, app: Circulation, dsn: str) -> None:
    h = key(dsn, None)
    response = client.get("/api/v1/loans?colour=red", headers=h)
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"
    assert "colour" in response.get_data(as_text=True)
    bad_cursor = client.get("/api/v1/loans?cursor=nonsense", headers=h)
    assert bad_cursor.status_code == 422
    assert bad_cursor.get_json()["field"] == "cursor"
    assert bad_cursor.get_json()["type"] == "/problems/invalid-input"
    assert client.get("/api/v1/loans?limit=0", headers=h).status_code in (400, 422)
    assert client.get("/api/v1/loans").status_code == 401
    naive = client.get(f"/api/v1/libraries/{CHENGDU}/holdings?as_of=2026-01-01T00:00:00", headers=h)
    assert naive.status_code in (400, 422)


def test_transits_age_and_overdue(client: FlaskClient, app: Circulation, dsn: str) -> None:
    circulate(app)
    old = datetime.now(UTC) - timedelta(days=5)
    app.execute(c.RegisterItem(owner=YUZHONG, barcode="T1", actor=desk(YUZHONG)))
    app.execute(c.RegisterItem(owner=YUZHONG, barcode="T2", actor=desk(YUZHONG)))
    app.execute(
        c.Dispatch(
            owner=YUZHONG,
            barcode="T1",
            library=YUZHONG,
            to_library=CHENGDU,
            actor=desk(YUZHONG),
            occurred_at=old,
        )
    )
    sent = app.execute(
        c.Dispatch(
            owner=YUZHONG, barcode="T2", library=YUZHONG, to_library=JINJIANG, actor=desk(YUZHONG)
        )
    )
    h = key(dsn, JINJIANG)
    # Read-your-writes: the worker has not run, so waiting for the position fails fast…
    after = max(sent.notification_ids)
    behind = client.get(f"/api/v1/transits?after={after}", headers=h)
    assert behind.status_code == 503
    assert behind.mimetype == "application/problem+json"
    assert behind.get_json()["type"] == "/problems/projection-behind"
    assert "position" in behind.get_json()["detail"]
    # A position the log never reached is no command's answer: refused at once, not awaited.
    never = client.get(f"/api/v1/transits?after={after + 1000}", headers=h)
    assert never.status_code == 422
    assert never.get_json()["type"] == "/problems/position-not-recorded"
    assert never.get_json()["field"] == "after"
    fold(dsn)
    # …and succeeds once it has.
    body = get(client, f"/api/v1/transits?after={after}", h)
    assert body["position"] >= after and body["overdue_after_days"] == 3
    by_barcode = {row["barcode"]: row for row in body["transits"]}
    assert set(by_barcode) == {"T1", "T2"}
    assert by_barcode["T1"]["overdue"] and 4.9 < by_barcode["T1"]["age_days"] < 5.1
    assert not by_barcode["T2"]["overdue"]
    assert [r["barcode"] for r in get(client, "/api/v1/transits?overdue=true", h)["transits"]] == [
        "T1"
    ]
    assert get(client, f"/api/v1/transits?to={JINJIANG}", h)["transits"][0]["barcode"] == "T2"
    assert get(client, f"/api/v1/transits?from={CHENGDU}", h)["transits"] == []


def test_balance_and_holdings_as_of(client: FlaskClient, app: Circulation, dsn: str) -> None:
    story = circulate(app)
    fold(dsn)
    h = key(dsn, CHENGDU)
    balance = get(client, f"/api/v1/libraries/{CHENGDU}/balance", h)
    assert balance["own_at_home"] == 2 and balance["held_for_others"] == 1
    assert balance["held_from"] == [{"library": JINJIANG, "items": 1}]
    assert balance["net"] == 1
    jinjiang = get(client, f"/api/v1/libraries/{JINJIANG}/balance", h)
    assert jinjiang["held_by"] == [{"library": CHENGDU, "items": 1}]
    get(client, "/api/v1/libraries/SC-999999/balance", h, status=404)

    def held(code: str, at: datetime) -> set[str]:
        url = f"/api/v1/libraries/{code}/holdings?as_of={at.isoformat().replace('+', '%2B')}"
        return {row["barcode"] for row in get(client, url, h)["items"]}

    just_after = story.at["return C1 away"] + timedelta(minutes=1)
    assert held(YUZHONG, just_after) == {"C1", "Y1"}
    assert held(CHENGDU, just_after) == {"C2"}
    assert held(CHENGDU, story.at["borrow C1"] + timedelta(minutes=1)) == {"C1", "C2"}
    assert held(CHENGDU, datetime.now(UTC)) == {"C1", "C2", "J1"}
    assert held(YUZHONG, story.at["dispatch C1 home"] + timedelta(minutes=1)) == {"Y1"}
    assert held(CHENGDU, datetime(2000, 1, 1, tzinfo=UTC)) == set()


def test_history_and_as_of(client: FlaskClient, app: Circulation, dsn: str) -> None:
    story = circulate(app)
    h = key(dsn, YUZHONG)
    body = get(client, f"/api/v1/items/{CHENGDU}/C1/history", h)
    events = [e["event"] for e in body["events"]]
    assert events[:4] == ["Item.Registered", "Item.Borrowed", "Item.Renewed", "Item.Returned"]
    returned = body["events"][3]
    assert returned["library"] == YUZHONG and returned["recorded_by"] == desk(YUZHONG).principal
    assert returned["details"]["disposition"] == "transfer_to_owner"
    assert returned["state"]["status"] == "awaiting_transfer"
    assert returned["recorded_at"] >= body["events"][2]["recorded_at"]

    at = (story.at["renew C1"] + timedelta(minutes=1)).isoformat().replace("+", "%2B")
    then = get(client, f"/api/v1/items/{CHENGDU}/C1/history?as_of={at}", h)
    assert then["as_of"]["existed"] and then["as_of"]["state"]["status"] == "on_loan"
    assert then["as_of"]["state"]["loan"]["renewals"] == 1
    assert len(then["events"]) == 3

    early = get(client, f"/api/v1/items/{CHENGDU}/C1/history?as_of=2001-01-01T00:00:00Z", h)
    assert early["as_of"]["existed"] is False and early["as_of"]["state"] is None
    assert "did not exist yet" in early["as_of"]["message"] and early["events"] == []

    recorded = get(
        client, f"/api/v1/items/{CHENGDU}/C1/history?as_of={at}&basis=recorded", h
    )  # back-dated events were all recorded just now: nothing was known then
    assert recorded["as_of"]["existed"] is False
    get(client, f"/api/v1/items/{CHENGDU}/NOPE/history", h, status=404)


def test_locations_and_health(client: FlaskClient, app: Circulation, dsn: str) -> None:
    circulate(app)
    h = key(dsn, CHENGDU)
    health = get(client, "/healthz", {})
    assert set(health["projections"]) >= {"item_locations", "current_loans"}
    assert health["projections"]["item_locations"]["behind"] > 0
    fold(dsn)
    body = get(client, f"/api/v1/locations?library={CHENGDU}&status=on_shelf", h)
    assert [row["barcode"] for row in body["items"]] == ["C2", "J1"]
    assert get(client, "/healthz", {})["projections"]["item_locations"]["behind"] == 0
    assert client.get("/api/v1/locations?status=misplaced", headers=h).status_code in (400, 422)
    spec = client.get("/openapi.json").get_json()
    assert "get" in spec["paths"]["/api/v1/loans"] and "post" in spec["paths"]["/api/v1/loans"]
    assert "/api/v1/libraries/{code}/holdings" in spec["paths"]

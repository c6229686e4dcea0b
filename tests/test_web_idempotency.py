"""Idempotency-Key over HTTP: a retry gets the first response, byte for byte, and records
nothing; the same key for something else is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import CHENGDU, YUZHONG, count_events, count_rows, identity_number
from tests.test_web_errors import race
from tests.web_support import Api, assert_problem, web_api


@pytest.fixture
def api(dsn: str) -> Iterator[Api]:
    with web_api(dsn) as api:
        api.item(CHENGDU, "C1")
        yield api


def test_a_retry_answers_the_first_response_and_records_nothing(api: Api) -> None:
    reader = api.reader(1)
    body = {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU, "reader_id": reader}
    first = api.post("/loans", body, idempotency="desk-42")
    assert first.status_code == 201
    assert first.headers["Idempotent-Replayed"] == "false"
    events = count_events(api.dsn)

    again = api.post("/loans", dict(reversed(body.items())), idempotency="desk-42")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert count_events(api.dsn) == events
    assert api.state(CHENGDU, "C1")["loan"]["loan_id"] == first.get_json()["loan_id"]


def test_the_same_key_with_a_different_body_is_refused(api: Api) -> None:
    api.item(CHENGDU, "C2")
    first = api.post(
        f"/items/{CHENGDU}/C1/loss", {"library": CHENGDU, "reason": "gone"}, idempotency="k"
    )
    assert first.status_code == 201
    events = count_events(api.dsn)
    for path, body in [
        (f"/items/{CHENGDU}/C1/loss", {"library": CHENGDU, "reason": "stolen"}),
        (f"/items/{CHENGDU}/C2/loss", {"library": CHENGDU, "reason": "gone"}),
        ("/items", {"owner": CHENGDU, "barcode": "C3"}),  # another command altogether
    ]:
        response = api.post(path, body, idempotency="k")
        assert_problem(response, 422, "idempotency-key-reused", field="command_id")
    assert count_events(api.dsn) == events
    assert api.get(f"/items/{CHENGDU}/C3").status_code == 404


def test_an_explicit_occurred_at_is_part_of_what_a_retry_repeats(api: Api) -> None:
    body = {"library": CHENGDU, "reason": "gone", "occurred_at": "2026-01-05T10:00:00+08:00"}
    assert api.post(f"/items/{CHENGDU}/C1/loss", body, idempotency="t").status_code == 201
    moved = {**body, "occurred_at": "2026-01-05T10:00:01+08:00"}
    assert_problem(
        api.post(f"/items/{CHENGDU}/C1/loss", moved, idempotency="t"), 422, "idempotency-key-reused"
    )
    replay = api.post(f"/items/{CHENGDU}/C1/loss", body, idempotency="t")
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_keys_are_scoped_to_the_api_key_that_sends_them(api: Api) -> None:
    api.item(YUZHONG, "Y1")
    a = api.post(f"/items/{CHENGDU}/C1/loss", {"library": CHENGDU, "reason": "r"}, idempotency="1")
    b = api.post(
        f"/items/{YUZHONG}/Y1/loss",
        {"library": YUZHONG, "reason": "r"},
        key=YUZHONG,
        idempotency="1",
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.headers["Idempotent-Replayed"] == b.headers["Idempotent-Replayed"] == "false"
    assert a.get_json()["command_id"] != b.get_json()["command_id"]


def test_a_refused_command_is_not_remembered_so_its_retry_is_judged_afresh(api: Api) -> None:
    reader = api.reader(2)
    body = {"owner": CHENGDU, "barcode": "C9", "library": CHENGDU, "reader_id": reader}
    assert_problem(api.post("/loans", body, idempotency="early"), 404, "unknown-item")
    api.item(CHENGDU, "C9")  # the item gets registered meanwhile
    log = count_rows(api.dsn, "command_log")
    response = api.post("/loans", body, idempotency="early")
    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "false"
    assert count_rows(api.dsn, "command_log") == log + 1


def test_a_reader_registration_retry_replays_with_201(api: Api) -> None:
    body = {"document": "resident_id", "number": identity_number(3), "home_library": CHENGDU}
    first = api.post("/readers", body, idempotency="r-1")
    again = api.post("/readers", body, idempotency="r-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()


def test_concurrent_retries_record_once_and_answer_alike(api: Api) -> None:
    reader = api.reader(4)
    body = {"owner": CHENGDU, "barcode": "C1", "library": CHENGDU, "reader_id": reader}
    events = count_events(api.dsn)
    answers = race([lambda: api.post("/loans", body, idempotency="twin")] * 4)
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.get_data() for a in answers}) == 1
    assert sorted(a.headers["Idempotent-Replayed"] for a in answers) == ["false"] + ["true"] * 3
    assert count_events(api.dsn) == events + 2  # Item.Borrowed and Reader.LoanOpened, once

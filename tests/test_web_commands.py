"""Every command route over HTTP: what a desk sends, what it gets back, what the ledger holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from ledger.domain.common import CONSORTIUM_TZ, library_id
from ledger.domain.items import Status
from tests.helpers import CHENGDU, JINJIANG, YUZHONG, count_events, identity_number, now
from tests.web_support import ADMIN_KEY, Api, web_api


@pytest.fixture
def api(dsn: str) -> Iterator[Api]:
    with web_api(dsn) as api:
        yield api


def test_the_administrator_registers_a_library_with_its_policy(api: Api) -> None:
    response = api.post(
        "/libraries",
        {
            "code": "CQ-500101",
            "name": "万州区图书馆",
            "region": "chongqing",
            "level": "county",
            "policy": {"loan_days": 21, "return_mode": "float"},
        },
        key=ADMIN_KEY,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["code"] == "CQ-500101"
    assert UUID(body["library_id"]) == library_id("CQ-500101")
    assert response.headers["Idempotent-Replayed"] == "false"
    library = api.ledger.load([library_id("CQ-500101")])[library_id("CQ-500101")]
    assert library.name == "万州区图书馆"
    assert (library.policy.loan_days, str(library.policy.return_mode)) == (21, "float")
    assert library.policy.renewals_allowed == 1  # omitted: the default


def test_the_administrator_sets_a_policy_and_gets_it_back(api: Api) -> None:
    response = api.post(
        f"/libraries/{CHENGDU}/policy",
        {"policy": {"loan_days": 14, "renewals_allowed": 3, "return_mode": "float"}},
        key=ADMIN_KEY,
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["policy"] == {
        "loan_days": 14,
        "renewals_allowed": 3,
        "renewal_days": 30,
        "return_mode": "float",
    }
    library = api.ledger.load([library_id(CHENGDU)])[library_id(CHENGDU)]
    assert library.policy.loan_days == 14


def test_a_desk_registers_an_item_and_finds_it_on_its_shelf(api: Api) -> None:
    response = api.post(
        "/items",
        {"owner": CHENGDU, "barcode": "C0001", "title": "平凡的世界", "isbn": "9787530221112"},
    )
    assert response.status_code == 201
    assert response.get_json()["owner"] == CHENGDU
    state = api.state(CHENGDU, "C0001")
    assert state["item_id"] == response.get_json()["item_id"]
    assert (state["status"], state["location"], state["custodian"]) == (
        "on_shelf",
        CHENGDU,
        CHENGDU,
    )
    assert (state["title"], state["isbn"]) == ("平凡的世界", "9787530221112")
    assert state["loan"] is None and state["transfer"] is None
    assert state["version"] == 1


def test_both_cards_reach_one_reader_and_only_the_masked_number_comes_back(api: Api) -> None:
    number = identity_number(7)
    first = api.post(
        "/readers", {"document": "resident_id", "number": number, "home_library": CHENGDU}
    )
    assert first.status_code == 201
    body = first.get_json()
    assert body["created"] is True
    assert body["masked_number"] == f"{number[:4]}{'*' * 10}{number[-4:]}"
    assert number not in first.get_data(as_text=True)

    again = api.post(
        "/readers",
        {"document": "social_security_card", "number": number, "home_library": CHENGDU},
    )
    assert again.status_code == 200  # nothing new was created
    assert again.get_json()["reader_id"] == body["reader_id"]
    assert again.get_json()["created"] is False
    assert number not in again.get_data(as_text=True)


def test_borrow_by_card_gives_a_loan_due_at_the_end_of_the_local_day(api: Api) -> None:
    api.item(CHENGDU, "C1")
    api.reader(1)
    response = api.post(
        "/loans",
        {
            "owner": CHENGDU,
            "barcode": "C1",
            "library": CHENGDU,
            "reader": {"document": "social_security_card", "number": identity_number(1)},
        },
    )
    assert response.status_code == 201, response.get_json()
    loan = response.get_json()
    due = datetime.fromisoformat(loan["due_at"])
    today = now().astimezone(CONSORTIUM_TZ).date()
    assert due.astimezone(CONSORTIUM_TZ).date() == today + timedelta(days=30)  # 成都: 30 days
    assert (due.hour, due.minute, due.utcoffset()) == (23, 59, timedelta(hours=8))
    state = api.state(CHENGDU, "C1")
    assert state["status"] == "on_loan"
    assert state["loan"]["loan_id"] == loan["loan_id"]
    assert state["loan"]["reader_id"] == loan["reader_id"]


def test_borrow_by_reader_id_at_an_earlier_moment_dates_the_loan_then(api: Api) -> None:
    api.item(YUZHONG, "Y1")
    reader = api.reader(2, home=YUZHONG)
    at = (now() - timedelta(days=3)).astimezone(CONSORTIUM_TZ).replace(microsecond=0)
    response = api.post(
        "/loans",
        {
            "owner": YUZHONG,
            "barcode": "Y1",
            "library": YUZHONG,
            "reader_id": reader,
            "occurred_at": at.isoformat(),
        },
        key=YUZHONG,
    )
    assert response.status_code == 201, response.get_json()
    due = datetime.fromisoformat(response.get_json()["due_at"])
    assert due.astimezone(CONSORTIUM_TZ).date() == at.date() + timedelta(days=21)
    assert datetime.fromisoformat(api.state(YUZHONG, "Y1")["since"]) == at


def test_renewal_answers_the_new_due_date(api: Api) -> None:
    api.item(CHENGDU, "C2")
    loan = api.borrow(CHENGDU, "C2", api.reader(3), CHENGDU)
    response = api.post(f"/loans/{loan['loan_id']}/renewals", {"library": CHENGDU})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["loan_id"], body["renewals"]) == (loan["loan_id"], 1)
    assert datetime.fromisoformat(body["due_at"]) >= datetime.fromisoformat(loan["due_at"])
    assert api.state(CHENGDU, "C2")["loan"]["renewals"] == 1


@pytest.mark.parametrize(
    ("owner", "returned_at", "disposition", "status", "destination"),
    [
        (CHENGDU, CHENGDU, "shelve", "on_shelf", None),
        (CHENGDU, YUZHONG, "transfer_to_owner", "awaiting_transfer", CHENGDU),
        (JINJIANG, CHENGDU, "float", "on_shelf", None),
    ],
)
def test_return_at_any_member_library_follows_the_owners_policy(
    api: Api,
    owner: str,
    returned_at: str,
    disposition: str,
    status: str,
    destination: str | None,
) -> None:
    api.item(owner, "R1")
    loan = api.borrow(owner, "R1", api.reader(4, home=owner), owner)
    response = api.post(
        "/returns", {"owner": owner, "barcode": "R1", "library": returned_at}, key=returned_at
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["loan_id"], body["disposition"]) == (loan["loan_id"], disposition)
    state = api.state(owner, "R1")
    assert (state["status"], state["location"], state["destination"]) == (
        status,
        returned_at,
        destination,
    )


def _awaiting_at_yuzhong(api: Api, barcode: str) -> None:
    """A 成都 item returned at 渝中: it waits there to go home."""
    api.item(CHENGDU, barcode)
    api.borrow(CHENGDU, barcode, api.reader(5), CHENGDU)
    response = api.post(
        "/returns", {"owner": CHENGDU, "barcode": barcode, "library": YUZHONG}, key=YUZHONG
    )
    assert response.get_json()["disposition"] == "transfer_to_owner"


def test_dispatch_then_receipt_brings_the_item_home(api: Api) -> None:
    _awaiting_at_yuzhong(api, "T1")
    dispatched = api.post(
        "/transfers",
        {"owner": CHENGDU, "barcode": "T1", "from_library": YUZHONG, "to_library": CHENGDU},
        key=YUZHONG,
    )
    assert dispatched.status_code == 201, dispatched.get_json()
    transfer_id = dispatched.get_json()["transfer_id"]
    state = api.state(CHENGDU, "T1")
    assert state["status"] == "in_transit"
    assert state["transfer"]["transfer_id"] == transfer_id
    assert (state["transfer"]["from_library"], state["transfer"]["to_library"]) == (
        YUZHONG,
        CHENGDU,
    )

    received = api.post(f"/transfers/{transfer_id}/receipt", {"library": CHENGDU})
    assert received.status_code == 201, received.get_json()
    assert received.get_json()["transfer_id"] == transfer_id
    state = api.state(CHENGDU, "T1")
    assert (state["status"], state["location"], state["transfer"]) == ("on_shelf", CHENGDU, None)


def test_a_cancelled_transfer_puts_the_item_back_where_it_waited(api: Api) -> None:
    _awaiting_at_yuzhong(api, "T2")
    transfer_id = api.post(
        "/transfers",
        {"owner": CHENGDU, "barcode": "T2", "from_library": YUZHONG, "to_library": CHENGDU},
        key=YUZHONG,
    ).get_json()["transfer_id"]
    response = api.post(
        f"/transfers/{transfer_id}/cancellation",
        {"library": YUZHONG, "reason": "dispatched_in_error", "note": "装错箱"},
        key=YUZHONG,
    )
    assert response.status_code == 201, response.get_json()
    state = api.state(CHENGDU, "T2")
    assert (state["status"], state["location"], state["destination"]) == (
        "awaiting_transfer",
        YUZHONG,
        CHENGDU,
    )


def test_an_item_can_turn_up_with_no_dispatch_on_record(api: Api) -> None:
    _awaiting_at_yuzhong(api, "T3")
    response = api.post(
        f"/items/{CHENGDU}/T3/arrivals", {"library": CHENGDU, "note": "came back in a reader's bag"}
    )
    assert response.status_code == 201, response.get_json()
    state = api.state(CHENGDU, "T3")
    assert (state["status"], state["location"]) == ("on_shelf", CHENGDU)


def test_loss_found_and_withdrawal(api: Api) -> None:
    api.item(CHENGDU, "L1")
    loan = api.borrow(CHENGDU, "L1", api.reader(6), CHENGDU)
    lost = api.post(f"/items/{CHENGDU}/L1/loss", {"library": CHENGDU, "reason": "reader lost it"})
    assert lost.status_code == 201, lost.get_json()
    assert lost.get_json()["loan_id"] == loan["loan_id"]
    assert api.state(CHENGDU, "L1")["status"] == "lost"

    found = api.post(f"/items/{CHENGDU}/L1/found", {"library": CHENGDU})
    assert found.status_code == 201
    assert api.state(CHENGDU, "L1")["status"] == "on_shelf"

    withdrawn = api.post(
        f"/items/{CHENGDU}/L1/withdrawal", {"library": CHENGDU, "reason": "worn out\n(spine)"}
    )
    assert withdrawn.status_code == 201, withdrawn.get_json()
    assert withdrawn.get_json()["status"] == Status.WITHDRAWN
    assert api.state(CHENGDU, "L1")["status"] == "withdrawn"


def test_a_correction_names_the_event_it_corrects(api: Api) -> None:
    api.item(CHENGDU, "K1", title="三休")
    response = api.post(
        f"/items/{CHENGDU}/K1/corrections",
        {
            "library": CHENGDU,
            "corrects_version": 1,
            "reason": "typo in the title",
            "changes": {"title": "三体"},
        },
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["corrects_version"] == 1
    state = api.state(CHENGDU, "K1")
    assert (state["title"], state["version"]) == ("三体", 2)


def test_every_answer_names_its_events_positions(api: Api) -> None:
    before = count_events(api.dsn)
    response = api.post("/items", {"owner": CHENGDU, "barcode": "P1"})
    positions = response.get_json()["positions"]
    assert len(positions) == count_events(api.dsn) - before == 1
    assert response.get_json()["command_id"].startswith("auto-")

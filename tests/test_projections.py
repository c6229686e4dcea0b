"""Projections: each handler's effect, live against rebuilt, tracking, wait_for, names.

``circulate`` records one of every item, reader and library event through the real
writer; the tests fold it live (``LiveRunner``) and in batch (``rebuild``) and look at
the tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner

from ledger import commands as c
from ledger.application import Circulation
from ledger.cli import main
from ledger.domain.common import item_id
from ledger.domain.items import Item
from ledger.projections import REGISTRY, UnknownProjection, select
from ledger.projections import tracking as t
from ledger.projections.runner import LiveRunner
from ledger.replay import STAGING, rebuild
from tests.conftest import ADMIN, open_ledger
from tests.helpers import (
    CHENGDU,
    JINJIANG,
    YUZHONG,
    desk,
    identity_number,
    join_all,
    register_reader,
)

MINE = ["item_locations", "current_loans", "transits", "library_balances", "item_custody"]


@pytest.fixture
def app(dsn: str) -> Iterator[Circulation]:
    ledger = open_ledger(dsn)
    yield ledger
    ledger.close()


def fold(dsn: str) -> None:
    with LiveRunner(dsn) as runner:
        runner.catch_up()


def rows(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()


def one(dsn: str, query: str, *params: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        from psycopg.rows import dict_row

        return conn.cursor(row_factory=dict_row).execute(query, params).fetchone()


def snapshot(dsn: str, names: list[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the projections, in a stable order, plus their positions."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn) as conn:
        for projection in select(names or MINE):
            for table in projection.tables:
                cols = ", ".join(table.columns)
                out[table.name] = conn.execute(
                    f"SELECT {cols} FROM {table.name} ORDER BY {cols}"
                ).fetchall()
        out["tracking"] = conn.execute(
            f"SELECT name, position FROM {t.TABLE} WHERE name = ANY(%s) ORDER BY name",
            (names or MINE,),
        ).fetchall()
    return out


@dataclass
class Story:
    readers: dict[str, UUID]
    positions: dict[str, int]  # the last position of each step
    at: dict[str, datetime]  # when each step occurred


def circulate(app: Circulation, *, dsn: str | None = None, checks: Any = None) -> Story:
    """One of every event. ``checks(step)`` runs after each step (folded live when ``dsn``)."""
    start = datetime.now(UTC) - timedelta(days=40)
    story = Story({}, {}, {})
    clock = [start]

    def step(name: str, call: Any, **kwargs: Any) -> Any:
        clock[0] += timedelta(hours=6)
        story.at[name] = clock[0]
        result = app.execute(call(occurred_at=clock[0], **kwargs))
        if result.notification_ids:
            story.positions[name] = max(result.notification_ids)
        if dsn is not None and checks is not None:
            fold(dsn)
            checks(name)
        return result

    join_all(app)
    story.readers["r1"] = register_reader(app, 1, home=CHENGDU)
    story.readers["r2"] = register_reader(app, 2, home=YUZHONG)
    for owner, barcode in ((CHENGDU, "C1"), (CHENGDU, "C2"), (JINJIANG, "J1"), (YUZHONG, "Y1")):
        app.execute(
            c.RegisterItem(
                owner=owner, barcode=barcode, title="三体", actor=desk(owner), occurred_at=start
            )
        )
    r1, r2 = story.readers["r1"], story.readers["r2"]
    c1 = dict(owner=CHENGDU, barcode="C1")
    c2 = dict(owner=CHENGDU, barcode="C2")
    j1 = dict(owner=JINJIANG, barcode="J1")
    y1 = dict(owner=YUZHONG, barcode="Y1")

    loan = step("borrow C1", c.Borrow, **c1, library=CHENGDU, reader_id=r1, actor=desk(CHENGDU))
    step(
        "renew C1",
        c.Renew,
        loan_id=UUID(loan.outcome["loan_id"]),
        library=CHENGDU,
        actor=desk(CHENGDU),
    )
    step("return C1 away", c.Return, **c1, library=YUZHONG, actor=desk(YUZHONG))
    sent = step(
        "dispatch C1 home",
        c.Dispatch,
        **c1,
        library=YUZHONG,
        to_library=CHENGDU,
        actor=desk(YUZHONG),
    )
    step(
        "receive C1",
        c.Receive,
        transfer_id=UUID(sent.outcome["transfer_id"]),
        library=CHENGDU,
        actor=desk(CHENGDU),
    )
    step("borrow J1", c.Borrow, **j1, library=JINJIANG, reader_id=r2, actor=desk(JINJIANG))
    step("return J1 floats", c.Return, **j1, library=CHENGDU, actor=desk(CHENGDU))
    step("borrow C2", c.Borrow, **c2, library=CHENGDU, reader_id=r2, actor=desk(CHENGDU))
    step("lose C2", c.DeclareLost, **c2, reason="gone", library=CHENGDU, actor=desk(CHENGDU))
    step("find C2 away", c.Found, **c2, library=YUZHONG, actor=desk(YUZHONG))
    sent = step(
        "dispatch C2",
        c.Dispatch,
        **c2,
        library=YUZHONG,
        to_library=CHENGDU,
        actor=desk(YUZHONG),
    )
    step(
        "cancel C2",
        c.CancelTransfer,
        transfer_id=UUID(sent.outcome["transfer_id"]),
        reason="plan_changed",
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    step(
        "dispatch C2 again",
        c.Dispatch,
        **c2,
        library=YUZHONG,
        to_library=JINJIANG,
        actor=desk(YUZHONG),
    )
    step(
        "C2 turns up at home",
        c.ReceiveUnannounced,
        **c2,
        note="in the book drop",
        library=CHENGDU,
        actor=desk(CHENGDU),
    )
    step(
        "retitle and move Y1",
        c.Correct,
        **y1,
        corrects_version=1,
        reason="shelved at the wrong branch",
        changes={"title": "三体 II", "location": JINJIANG},
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    step("lose Y1", c.DeclareLost, **y1, reason="gone", library=YUZHONG, actor=desk(YUZHONG))
    step(
        "withdraw Y1",
        c.Withdraw,
        **y1,
        reason="lost for good",
        library=YUZHONG,
        actor=desk(YUZHONG),
    )
    step("borrow C1 again", c.Borrow, **c1, library=CHENGDU, reader_id=r1, actor=desk(CHENGDU))
    due = datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC)
    step(
        "extend C1",
        c.Correct,
        **c1,
        corrects_version=7,
        reason="holiday closure",
        changes={"due_at": due},
        library=CHENGDU,
        actor=desk(CHENGDU),
    )
    step(
        "block r1",
        c.BlockReader,
        reader_id=r1,
        reason="unpaid",
        library=CHENGDU,
        actor=desk(CHENGDU),
    )
    step("unblock r1", c.UnblockReader, reader_id=r1, library=CHENGDU, actor=desk(CHENGDU))
    step(
        "forget r2",
        c.ForgetReader,
        reader=c.ReaderCard(identity_number(2)),
        library=YUZHONG,
        actor=ADMIN,
    )
    return story


# ------------------------------------------------------------------ handlers


def test_every_event_type_lands_in_each_projection(app: Circulation, dsn: str) -> None:
    c1, c2, j1, y1 = (
        item_id(CHENGDU, "C1"),
        item_id(CHENGDU, "C2"),
        item_id(JINJIANG, "J1"),
        item_id(YUZHONG, "Y1"),
    )
    seen: list[str] = []

    def item(i: UUID) -> dict[str, Any]:
        return one(dsn, "SELECT * FROM item_locations WHERE item_id = %s", i)

    def loan(i: UUID) -> dict[str, Any] | None:
        return one(dsn, "SELECT * FROM current_loans WHERE item_id = %s", i)

    def transit(i: UUID) -> dict[str, Any] | None:
        return one(dsn, "SELECT * FROM transits WHERE item_id = %s", i)

    def balance(code: str) -> tuple[int, ...]:
        row = one(dsn, "SELECT * FROM library_balances WHERE library = %s", code)
        return (
            row["own_at_home"],
            row["own_elsewhere"],
            row["own_in_transit"],
            row["own_lost"],
            row["held_for_others"],
        )

    def custody(i: UUID) -> tuple[str | None, str | None]:
        row = one(dsn, "SELECT holder, held_as FROM item_custody_open WHERE item_id = %s", i)
        return row["holder"], row["held_as"]

    def checks(step: str) -> None:
        seen.append(step)
        if step == "borrow C1":
            assert item(c1)["status"] == "on_loan" and item(c1)["custodian"] == CHENGDU
            assert loan(c1)["library"] == CHENGDU and loan(c1)["renewals"] == 0
            assert custody(c1) == (CHENGDU, "loan")
            assert balance(CHENGDU) == (2, 0, 0, 0, 0)  # on loan from home: still at home
        elif step == "renew C1":
            assert loan(c1)["renewals"] == 1
            assert loan(c1)["due_at"] > loan(c1)["borrowed_at"] + timedelta(days=29)
        elif step == "return C1 away":
            row = item(c1)
            assert (row["status"], row["location"], row["destination"]) == (
                "awaiting_transfer",
                YUZHONG,
                CHENGDU,
            )
            assert loan(c1) is None
            assert balance(CHENGDU) == (1, 1, 0, 0, 0)
            assert balance(YUZHONG)[4] == 1
            assert rows(dsn, "library_balance_pairs") == [(YUZHONG, CHENGDU, 1)]
            assert custody(c1) == (YUZHONG, "shelf")
        elif step == "dispatch C1 home":
            assert item(c1)["status"] == "in_transit" and item(c1)["resumes"] == "awaiting_transfer"
            assert (transit(c1)["from_library"], transit(c1)["to_library"]) == (YUZHONG, CHENGDU)
            assert balance(CHENGDU) == (1, 0, 1, 0, 0) and balance(YUZHONG)[4] == 0
            assert rows(dsn, "library_balance_pairs") == []
            assert custody(c1) == (None, None)
        elif step == "receive C1":
            assert (item(c1)["status"], item(c1)["location"]) == ("on_shelf", CHENGDU)
            assert transit(c1) is None
            assert balance(CHENGDU) == (2, 0, 0, 0, 0)
            assert custody(c1) == (CHENGDU, "shelf")
        elif step == "return J1 floats":
            assert (item(j1)["status"], item(j1)["location"]) == ("on_shelf", CHENGDU)
            assert item(j1)["destination"] is None
            assert balance(JINJIANG) == (0, 1, 0, 0, 0) and balance(CHENGDU)[4] == 1
        elif step == "lose C2":
            assert item(c2)["status"] == "lost" and loan(c2) is None
            assert balance(CHENGDU)[3] == 1
            assert custody(c2) == (None, None)
        elif step == "find C2 away":
            assert (item(c2)["status"], item(c2)["location"]) == ("on_shelf", YUZHONG)
            assert balance(CHENGDU)[1] == 1 and balance(CHENGDU)[3] == 0
        elif step == "cancel C2":
            row = item(c2)
            assert (row["status"], row["location"], row["custodian"]) == (
                "on_shelf",
                YUZHONG,
                YUZHONG,
            )
            assert transit(c2) is None and custody(c2) == (YUZHONG, "shelf")
        elif step == "dispatch C2 again":
            assert transit(c2)["to_library"] == JINJIANG
        elif step == "C2 turns up at home":
            assert (item(c2)["status"], item(c2)["location"]) == ("on_shelf", CHENGDU)
            assert transit(c2) is None and custody(c2) == (CHENGDU, "shelf")
        elif step == "retitle and move Y1":
            assert (item(y1)["title"], item(y1)["location"]) == ("三体 II", JINJIANG)
            assert balance(YUZHONG)[1] == 1 and custody(y1) == (JINJIANG, "shelf")
        elif step == "withdraw Y1":
            assert item(y1)["status"] == "withdrawn"
            assert balance(YUZHONG) == (0, 0, 0, 0, 0)
            assert custody(y1) == (None, None)
        elif step == "extend C1":
            assert loan(c1)["due_at"] == datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC)

    story = circulate(app, dsn=dsn, checks=checks)
    assert len(seen) == 22
    forgotten = one(dsn, "SELECT * FROM loan_readers WHERE reader_id = %s", story.readers["r2"])
    assert forgotten["masked_number"] is None and forgotten["home_library"] == YUZHONG
    kept = one(dsn, "SELECT * FROM loan_readers WHERE reader_id = %s", story.readers["r1"])
    assert kept["masked_number"].startswith("5101") and "*" in kept["masked_number"]
    # Every item row says what the item replayed from its stream says.
    for i in (c1, c2, j1, y1):
        aggregate = app.load([i])[i]
        assert isinstance(aggregate, Item)
        assert_row_matches(item(i), aggregate)
    # The closed custody intervals never run backwards and do not overlap per item.
    intervals = rows(dsn, "item_custody")
    assert all(r[4] <= r[5] for r in intervals)


def assert_row_matches(row: dict[str, Any], item: Item) -> None:
    loan, transfer = item.loan, item.transfer
    assert row["status"] == str(item.status)
    assert row["location"] == item.location
    assert row["custodian"] == item.custodian
    assert row["destination"] == item.destination
    assert row["title"] == item.title
    assert row["loan_id"] == (loan.loan_id if loan else None)
    assert row["reader_id"] == (loan.reader_id if loan else None)
    assert row["transfer_id"] == (transfer.transfer_id if transfer else None)
    assert row["transfer_to"] == (transfer.to_library if transfer else None)
    assert row["resumes"] == (str(transfer.resumes) if transfer else None)
    assert row["since"] == item.since
    assert row["version"] == item.version


def test_live_and_rebuilt_tables_are_identical(app: Circulation, dsn: str) -> None:
    circulate(app)
    with LiveRunner(dsn, batch=7) as runner:  # many small steps: batch edges everywhere
        assert runner.catch_up() > 3
    live = snapshot(dsn)
    report = rebuild(dsn, MINE, page=5)
    assert snapshot(dsn) == live
    assert report.position == live["tracking"][0][1]
    assert report.rows_written["item_locations"] == 4


def test_events_recorded_during_a_rebuild_are_folded_before_the_swap(
    app: Circulation, dsn: str
) -> None:
    circulate(app)
    fold(dsn)
    late = []

    def meanwhile(position: int, head: int) -> None:
        if not late:  # a desk records a loan while the rebuild runs
            late.append(
                app.execute(c.RegisterItem(owner=CHENGDU, barcode="LATE", actor=desk(CHENGDU)))
            )

    rebuild(dsn, MINE, page=10, progress=meanwhile)
    assert one(dsn, "SELECT status FROM item_locations WHERE barcode = 'LATE'")["status"] == (
        "on_shelf"
    )
    rebuilt = snapshot(dsn)
    fold(dsn)  # the live worker has nothing left to do, and agrees
    assert snapshot(dsn) == rebuilt


# ------------------------------------------------------- rebuild robustness


def test_an_interrupted_rebuild_leaves_the_old_tables_serving(app: Circulation, dsn: str) -> None:
    circulate(app)
    fold(dsn)
    before = snapshot(dsn)

    class Interrupted(Exception):
        pass

    def crash() -> None:
        # Mid-rebuild, the old tables still answer (another connection reads them).
        assert rows(dsn, "item_locations") and one(dsn, "SELECT count(*) AS n FROM transits")
        raise Interrupted

    with pytest.raises(Interrupted):
        rebuild(dsn, MINE, before_swap=crash)
    assert snapshot(dsn) == before
    with psycopg.connect(dsn) as conn:
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (STAGING,)
        ).fetchone()
    assert leftovers == (0,)
    rebuild(dsn, MINE)  # a rerun starts clean
    assert snapshot(dsn) == before


def test_a_rebuild_keeps_the_grants_of_the_tables(app: Circulation, dsn: str) -> None:
    circulate(app)
    rebuild(dsn, MINE)
    rebuild(dsn, ["transits"])  # twice: index and constraint names survive the swap
    with psycopg.connect(dsn) as conn:
        grants = conn.execute(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee = 'tongjie_app'"
            " AND table_name = ANY(%s) GROUP BY 1 ORDER BY 1",
            (["item_locations", "transits", "item_custody"],),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'transits' ORDER BY 1"
        ).fetchall()
    assert [g[1] for g in grants] == ["DELETE,INSERT,SELECT,UPDATE"] * 3
    assert ("transits_pkey",) in indexes and len(indexes) == 4


def test_unknown_projection_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownProjection) as error:
        select(["item_locations", "loans"])
    assert "loans" in str(error.value)
    for name in REGISTRY:
        assert name in str(error.value)
    result = CliRunner().invoke(main, ["rebuild", "loans"])
    assert result.exit_code == 2
    assert "valid names are" in result.output and "current_loans" in result.output
    assert CliRunner().invoke(main, ["rebuild"]).exit_code == 2


# ----------------------------------------------------------------- tracking


def test_wait_for_returns_once_the_worker_has_folded_the_position(
    app: Circulation, dsn: str
) -> None:
    story = circulate(app)
    last = max(story.positions.values())
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert not t.wait_for(conn, MINE, last, timeout=0.2)
        fold(dsn)
        assert t.wait_for(conn, MINE, last, timeout=0.2)
        assert all(p >= last for p in t.positions(conn, MINE).values())
        lag = t.lag(conn, MINE)
    assert all(v["behind"] == 0 for v in lag.values())


def test_a_projection_added_later_starts_at_zero(app: Circulation, dsn: str) -> None:
    circulate(app)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {t.TABLE} WHERE name = 'transits'")
    with LiveRunner(dsn, select(["transits"])) as runner:
        runner.catch_up()
    assert len(rows(dsn, "transits")) == 0  # every shipment of the story ended
    assert snapshot(dsn, ["transits"])["tracking"][0][1] > 0


def test_a_projection_far_behind_does_not_hold_up_the_others(app: Circulation, dsn: str) -> None:
    circulate(app)
    fold(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:  # as if transits had just been added
        conn.execute("DELETE FROM transits")
        conn.execute(f"UPDATE {t.TABLE} SET position = 0 WHERE name = 'transits'")
    late = app.execute(c.RegisterItem(owner=CHENGDU, barcode="NEW", actor=desk(CHENGDU)))
    with LiveRunner(dsn, select(MINE), batch=3) as runner:
        runner.step()
        with psycopg.connect(dsn, autocommit=True) as conn:
            reached = t.positions(conn, MINE)
        assert reached["transits"] == 3
        assert all(reached[n] == max(late.notification_ids) for n in MINE if n != "transits")
        runner.catch_up()
    rebuilt_from_zero = snapshot(dsn)
    rebuild(dsn, MINE)
    assert snapshot(dsn) == rebuilt_from_zero

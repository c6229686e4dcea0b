"""The one circulation model behind the demo and the bulk generator, run on the in-memory
writer: what it plans, the rules accept, and a seed always plans the same history."""

from __future__ import annotations

from collections import Counter

from ledger.demo.simulation import Scale, Simulation, Summary
from ledger.write import Writer
from tests.domain.conftest import open_writer

SMALL = Scale(days=15, items_per_library=3, readers=200, loans_per_day=80, seed=7)


def simulate(scale: Scale = SMALL) -> tuple[Summary, Writer]:
    ledger = open_writer(loan_limit=20)
    try:
        return Simulation(ledger, scale).run(), ledger
    finally:
        ledger.close()


def history(ledger: Writer) -> Counter[tuple[str, object, object]]:
    """What was recorded, whatever order the desk threads' commits landed in."""
    return Counter(
        (type(e).__qualname__, e.originator_id, e.occurred_at) for e in ledger.uow.events
    )


def test_the_rules_accept_everything_the_model_plans() -> None:
    summary, ledger = simulate()
    assert summary.refused == {}
    assert summary.loans > 0 and summary.returns > 0 and summary.transfers_dispatched > 0
    assert summary.cross_library_loans > 0 and summary.floated > 0
    kinds = Counter(type(e).__qualname__ for e in ledger.uow.events)
    assert kinds["Item.Borrowed"] == summary.loans
    assert kinds["Item.Returned"] == summary.returns
    assert kinds["Library.Joined"] == summary.libraries


def test_a_seed_plans_the_same_history_whatever_order_the_desks_commit_in() -> None:
    first_summary, first = simulate()
    second_summary, second = simulate()
    assert first_summary == second_summary
    assert history(first) == history(second)
    other_summary, _ = simulate(Scale(**{**vars(SMALL), "seed": 8}))
    assert other_summary != first_summary


def test_every_command_is_logged_under_its_demo_key() -> None:
    summary, ledger = simulate()
    keys = ledger.uow.command_log
    assert all(key.startswith("demo-") for key in keys)
    assert sum(1 for k in keys if k.startswith("demo-borrow-")) == summary.loans

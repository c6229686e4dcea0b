"""Property: for random command histories, the live tables equal the rebuilt ones.

The circulation state machine of ``test_invariants`` drives random commands (its model
keeps most of them valid, and the refused ones record nothing); this machine adds
corrections and unannounced arrivals, and folds the log live at random moments, so
batch edges fall anywhere. At the end it catches up live, snapshots every projection
table, rebuilds them all in batch, and compares; each item_locations row must also
say what the item replayed from its own stream says.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

from ledger import commands as c
from ledger.domain.errors import DomainError, ItemInTransit, ItemNotAvailable, ItemWithdrawn
from ledger.domain.items import Item
from ledger.projections.runner import LiveRunner
from ledger.replay import rebuild
from tests import test_invariants as inv
from tests.helpers import desk
from tests.test_projections import MINE, assert_row_matches, one, snapshot

FOLDS: list[int] = []


class ProjectedLedger(inv.LedgerMachine):
    # The circulation invariants are the other test's business; here only projections.
    state_matches_model_and_replays_the_same = None  # type: ignore[assignment]
    every_item_is_in_exactly_one_consistent_state = None  # type: ignore[assignment]
    readers_hold_exactly_the_items_on_loan_to_them = None  # type: ignore[assignment]
    every_loan_ends_at_most_once = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.folds = 0

    @rule(batch=st.sampled_from([1, 3, 50]))
    def fold_live(self, batch: int) -> None:
        with LiveRunner(self.dsn, batch=batch) as runner:
            runner.step()
        self.folds += 1

    @precondition(lambda self: self._any(inv.ON_SHELF, inv.AWAITING))
    @rule(i=inv.ITEM, to=inv.PLACE, title=st.booleans())
    def correct(self, i: int, to: str, title: bool) -> None:
        item = self.items[i]
        changes: dict[str, Any] = {"title": f"v{self.folds}"} if title else {}
        if item.status in (inv.ON_SHELF, inv.AWAITING):
            changes["location"] = to
        if not changes:
            return
        try:
            self.app.execute(
                c.Correct(
                    owner=item.owner,
                    barcode=item.barcode,
                    corrects_version=1,
                    reason="inventory",
                    changes=changes,
                    library=item.owner,
                    actor=desk(item.owner),
                )
            )
        except DomainError:
            return
        if "location" in changes:
            item.location = to

    @precondition(lambda self: self._any(inv.LOST, inv.IN_TRANSIT, inv.AWAITING))
    @rule(i=inv.SOME_ITEM, at=inv.PLACE)
    def arrives_unannounced(self, i: int | None, at: str) -> None:
        # Only a missing item turns up: in transit (elsewhere than its destination, which
        # receives it), waiting to go home, or lost. On shelf anywhere or on loan, it is not.
        item = self._pick(i, inv.LOST, inv.IN_TRANSIT, inv.AWAITING)
        expected: type[DomainError] | None = None
        if item.status in (inv.ON_SHELF, inv.ON_LOAN):
            expected = ItemNotAvailable
        elif item.status == inv.WITHDRAWN:
            expected = ItemWithdrawn
        elif item.status == inv.IN_TRANSIT and item.transfer and item.transfer.to_library == at:
            expected = ItemInTransit
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.ReceiveUnannounced(
                    owner=item.owner, barcode=item.barcode, library=at, actor=desk(at)
                )
            ),
        )
        if result is not None:
            item.status, item.location, item.transfer, item.destination = (
                inv.ON_SHELF,
                at,
                None,
                None,
            )

    def teardown(self) -> None:
        try:
            with LiveRunner(self.dsn, batch=5) as runner:
                runner.catch_up()
            live = snapshot(self.dsn)
            for model in self.items:
                aggregate = self.app.load([model.id])[model.id]
                assert isinstance(aggregate, Item)
                row = one(self.dsn, "SELECT * FROM item_locations WHERE item_id = %s", model.id)
                assert_row_matches(row, aggregate)
            rebuild(self.dsn, MINE, page=7)
            assert snapshot(self.dsn) == live
            FOLDS.append(self.folds)
        finally:
            super().teardown()


def test_live_tables_equal_rebuilt_tables(server_dsn: str, template_dsn: str) -> None:
    inv.DATABASES.update(server=server_dsn, template=template_dsn)
    FOLDS.clear()
    run_state_machine_as_test(
        ProjectedLedger,
        settings=settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            database=None,
        ),
    )
    assert len(FOLDS) >= 12 and any(FOLDS), FOLDS  # live folds interleaved with commands

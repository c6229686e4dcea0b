"""Stateful property test: random circulation against a simple model, invariants after
every step, on a fresh PostgreSQL database per example.

Three libraries (two want their items back, one lets them float), four items, three
readers under a loan limit of two. Each rule predicts from the model whether the
command succeeds (and which error it gets otherwise), runs it, and updates the model.
After each step the items and readers replayed from the database must match the model
and each other, and the raw events must show every loan ending at most once.
"""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger import commands as c
from ledger.application import Circulation
from ledger.domain.common import item_id
from ledger.domain.errors import (
    DomainError,
    InvalidInput,
    ItemInTransit,
    ItemNotAvailable,
    ItemNotInTransit,
    ItemNotLost,
    ItemNotOnLoan,
    ItemWithdrawn,
    LoanClosed,
    NotPermitted,
    ReaderOverLimit,
    RenewalNotAllowed,
    UnknownTransfer,
)
from ledger.domain.items import Item
from ledger.domain.readers import Reader
from ledger.eventlog import MAPPER
from ledger.write import Result
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, JINJIANG, LIBRARIES, YUZHONG, desk, join_all

LIMIT = 2
PLACES = [CHENGDU, YUZHONG, JINJIANG]  # JINJIANG floats its items, the others do not
ITEMS = [(CHENGDU, "C1"), (YUZHONG, "Y1"), (JINJIANG, "J1"), (CHENGDU, "C2")]
READERS = [0, 1, 2]
HOMES = {n: PLACES[n % len(PLACES)] for n in READERS}  # each reader's home library
RENEWALS_ALLOWED = {code: LIBRARIES[code]["policy"]["renewals_allowed"] for code in PLACES}
FLOATS = {code: LIBRARIES[code]["policy"]["return_mode"] == "float" for code in PLACES}

ITEM = st.sampled_from(range(len(ITEMS)))
PLACE = st.sampled_from(PLACES)
# None: the library where the command makes sense (the item's location, the transfer's
# destination...), so that the interesting paths are not drowned in refusals.
LIKELY = st.one_of(st.none(), PLACE)
# None: an item in the state the rule needs, if there is one.
SOME_ITEM = st.one_of(st.none(), ITEM)

ON_SHELF, ON_LOAN, AWAITING, IN_TRANSIT, LOST, WITHDRAWN = (
    "on_shelf",
    "on_loan",
    "awaiting_transfer",
    "in_transit",
    "lost",
    "withdrawn",
)

# Set by the test before the machine runs: the session's server and migrated template.
DATABASES: dict[str, str] = {}
# What the rules did over a run, to check the run exercised the interesting paths.
STATS: Counter[str] = Counter()


def _with_dbname(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database() -> tuple[str, str]:
    name = f"tongjie_sm_{secrets.token_hex(6)}"
    template = str(conninfo_to_dict(DATABASES["template"])["dbname"])
    with psycopg.connect(DATABASES["server"], autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name, _with_dbname(DATABASES["server"], name)


def drop_database(name: str) -> None:
    with psycopg.connect(DATABASES["server"], autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@dataclass(frozen=True)
class MLoan:
    loan_id: UUID
    reader: int
    library: str
    renewals: int = 0


@dataclass(frozen=True)
class MTransfer:
    transfer_id: UUID
    from_library: str
    to_library: str
    resumes: str


@dataclass
class MItem:
    owner: str
    barcode: str
    status: str = ON_SHELF
    location: str = ""
    loan: MLoan | None = None
    transfer: MTransfer | None = None
    destination: str | None = None

    def __post_init__(self) -> None:
        self.location = self.location or self.owner

    @property
    def id(self) -> UUID:
        return item_id(self.owner, self.barcode)

    def involved(self) -> set[str]:
        places = {self.owner, self.location}
        if self.transfer is not None:
            places |= {self.transfer.from_library, self.transfer.to_library}
        return places


def refusal_for(status: str) -> type[DomainError]:
    """The error an item gives when its status forbids the command (Item._refuse)."""
    return {IN_TRANSIT: ItemInTransit, WITHDRAWN: ItemWithdrawn}.get(status, ItemNotAvailable)


class LedgerMachine(RuleBasedStateMachine):
    group_commit: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.db_name, self.dsn = create_database()
        self.app = open_ledger(self.dsn, group_commit=self.group_commit, loan_limit=LIMIT)
        self.observer: Circulation | None = None
        join_all(self.app, PLACES)
        self.items = [MItem(owner, barcode) for owner, barcode in ITEMS]
        for item in self.items:
            self.app.execute(
                c.RegisterItem(owner=item.owner, barcode=item.barcode, actor=desk(item.owner))
            )
        self.readers: list[UUID] = []
        for n in READERS:
            home = HOMES[n]
            result = self.app.execute(
                c.RegisterReader(
                    document="resident_id",
                    number=_number(n),
                    library=home,
                    actor=desk(home),
                )
            )
            self.readers.append(UUID(result.outcome["reader_id"]))
        self.open_loans: dict[int, set[UUID]] = {n: set() for n in READERS}
        self.loan_ids: list[UUID] = []
        self.transfer_ids: list[UUID] = []
        self.transfer_item: dict[UUID, int] = {}
        # A second instance with its own pool, never writing: what another process sees.
        self.observer = open_ledger(self.dsn, group_commit=False, loan_limit=LIMIT)

    def teardown(self) -> None:
        self.app.close()
        if self.observer is not None:
            self.observer.close()
        drop_database(self.db_name)

    # ------------------------------------------------------------------ running

    def run(self, expected: type[DomainError] | None, action: Any) -> Result | None:
        name = sys._getframe(1).f_code.co_name
        outcome = f"{name}: {'ok' if expected is None else expected.__name__}"
        event(outcome)
        STATS[outcome] += 1
        try:
            result = action()
        except DomainError as error:
            assert expected is not None, f"refused unexpectedly: {error!r}"
            assert type(error) is expected, f"expected {expected.__name__}, got {error!r}"
            return None
        assert expected is None, f"accepted, but the model expected {expected.__name__}"
        assert result.notification_ids
        assert not result.replayed
        return result

    # -------------------------------------------------------------------- rules

    def _any(self, *statuses: str) -> bool:
        return any(it.status in statuses for it in self.items)

    def _pick(self, i: int | None, *statuses: str) -> MItem:
        if i is not None:
            return self.items[i]
        return next((it for it in self.items if it.status in statuses), self.items[0])

    @precondition(lambda self: self._any(ON_SHELF))
    @rule(i=SOME_ITEM, where=LIKELY, r=st.sampled_from(READERS))
    def borrow(self, i: int | None, where: str | None, r: int) -> None:
        item = self._pick(i, ON_SHELF)
        at = where or item.location
        expected: type[DomainError] | None = None
        if len(self.open_loans[r]) >= LIMIT:
            expected = ReaderOverLimit
        elif item.status != ON_SHELF:
            expected = refusal_for(item.status)
        elif item.location != at:
            expected = ItemNotAvailable
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Borrow(
                    owner=item.owner,
                    barcode=item.barcode,
                    library=at,
                    reader_id=self.readers[r],
                    actor=desk(at),
                )
            ),
        )
        if result is not None:
            loan_id = UUID(result.outcome["loan_id"])
            item.status, item.location, item.destination = ON_LOAN, at, None
            item.loan = MLoan(loan_id, r, at)
            self.open_loans[r].add(loan_id)
            self.loan_ids.append(loan_id)

    @precondition(lambda self: self._any(ON_LOAN))
    @rule(n=st.integers(0, 3), at=PLACE)
    def renew(self, n: int, at: str) -> None:
        loan_id = self.loan_ids[-1 - n % len(self.loan_ids)]
        item = next((it for it in self.items if it.loan and it.loan.loan_id == loan_id), None)
        expected: type[DomainError] | None = None
        if item is None or item.loan is None:
            expected = LoanClosed  # every id here was issued by a borrow: it ended since
        elif at not in (item.loan.library, item.owner, HOMES[item.loan.reader]):
            expected = NotPermitted  # only the lender, the owner or the reader's home renews
        elif item.loan.renewals >= RENEWALS_ALLOWED[item.loan.library]:
            expected = RenewalNotAllowed
        result = self.run(
            expected, lambda: self.app.execute(c.Renew(loan_id=loan_id, library=at, actor=desk(at)))
        )
        if result is not None:
            assert item is not None and item.loan is not None
            item.loan = replace(item.loan, renewals=item.loan.renewals + 1)
            assert result.outcome["renewals"] == item.loan.renewals

    @precondition(lambda self: self._any(ON_LOAN))
    @rule(i=SOME_ITEM, at=PLACE)
    def return_item(self, i: int | None, at: str) -> None:
        item = self._pick(i, ON_LOAN)
        expected = None if item.status == ON_LOAN else ItemNotOnLoan
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Return(owner=item.owner, barcode=item.barcode, library=at, actor=desk(at))
            ),
        )
        if result is not None:
            assert item.loan is not None
            if at == item.owner:
                disposition = "shelve"
            elif FLOATS[item.owner]:
                disposition = "float"
            else:
                disposition = "transfer_to_owner"
            assert result.outcome["disposition"] == disposition
            assert result.outcome["loan_id"] == str(item.loan.loan_id)
            self.open_loans[item.loan.reader].discard(item.loan.loan_id)
            item.loan, item.location = None, at
            if disposition == "transfer_to_owner":
                item.status, item.destination = AWAITING, item.owner
            else:
                item.status, item.destination = ON_SHELF, None

    @precondition(lambda self: self._any(ON_SHELF, AWAITING))
    @rule(
        i=SOME_ITEM,
        source=LIKELY,
        to=PLACE,
    )
    def dispatch(self, i: int | None, source: str | None, to: str) -> None:
        item = self._pick(i, AWAITING)
        origin = source or item.location
        expected: type[DomainError] | None = None
        if origin == to:
            expected = InvalidInput
        elif item.status not in (ON_SHELF, AWAITING):
            expected = refusal_for(item.status)
        elif item.location != origin:
            expected = ItemNotAvailable
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Dispatch(
                    owner=item.owner,
                    barcode=item.barcode,
                    library=origin,
                    to_library=to,
                    actor=desk(origin),
                )
            ),
        )
        if result is not None:
            transfer_id = UUID(result.outcome["transfer_id"])
            item.transfer = MTransfer(transfer_id, origin, to, item.status)
            item.status, item.destination = IN_TRANSIT, None
            self.transfer_ids.append(transfer_id)
            self.transfer_item[transfer_id] = self.items.index(item)

    def _open_transfer(self, transfer_id: UUID) -> tuple[MItem, type[DomainError] | None]:
        """The item the transfer moved, and the error Item._require_transfer gives."""
        item = self.items[self.transfer_item[transfer_id]]
        if item.transfer is not None and item.transfer.transfer_id == transfer_id:
            return item, None
        return item, (UnknownTransfer if item.status == IN_TRANSIT else ItemNotInTransit)

    @precondition(lambda self: self._any(IN_TRANSIT))
    @rule(n=st.integers(0, 3), where=LIKELY)
    def receive(self, n: int, where: str | None) -> None:
        transfer_id = self.transfer_ids[-1 - n % len(self.transfer_ids)]
        item, expected = self._open_transfer(transfer_id)
        at = where or (item.transfer.to_library if item.transfer else PLACES[n % len(PLACES)])
        if expected is None and item.transfer is not None and at != item.transfer.to_library:
            expected = NotPermitted
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Receive(transfer_id=transfer_id, library=at, actor=desk(at))
            ),
        )
        if result is not None:
            item.transfer, item.status, item.location, item.destination = (
                None,
                ON_SHELF,
                at,
                None,
            )

    @precondition(lambda self: self._any(IN_TRANSIT))
    @rule(
        n=st.integers(0, 3),
        where=LIKELY,
        reason=st.sampled_from(["plan_changed", "dispatched_in_error", "other"]),
    )
    def cancel_transfer(self, n: int, where: str | None, reason: str) -> None:
        transfer_id = self.transfer_ids[-1 - n % len(self.transfer_ids)]
        item, expected = self._open_transfer(transfer_id)
        transfer = item.transfer
        at = where or (transfer.from_library if transfer else PLACES[n % len(PLACES)])
        if (
            expected is None
            and transfer is not None
            and at not in (transfer.from_library, transfer.to_library)
        ):
            expected = NotPermitted
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.CancelTransfer(transfer_id=transfer_id, reason=reason, library=at, actor=desk(at))
            ),
        )
        if result is not None:
            assert transfer is not None
            item.status, item.location, item.transfer = (
                transfer.resumes,
                transfer.from_library,
                None,
            )
            item.destination = item.owner if transfer.resumes == AWAITING else None
            assert result.outcome["status"] == transfer.resumes

    @precondition(lambda self: sum(it.status in (LOST, WITHDRAWN) for it in self.items) < 2)
    @rule(i=SOME_ITEM, at=PLACE)
    def declare_lost(self, i: int | None, at: str) -> None:
        item = self._pick(i, ON_LOAN, IN_TRANSIT, AWAITING)
        expected: type[DomainError] | None = None
        if item.status in (LOST, WITHDRAWN):
            expected = refusal_for(item.status)
        elif at not in item.involved():
            expected = NotPermitted
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.DeclareLost(
                    owner=item.owner,
                    barcode=item.barcode,
                    reason="not on the shelf",
                    library=at,
                    actor=desk(at),
                )
            ),
        )
        if result is not None:
            if item.loan is not None:
                assert result.outcome["loan_id"] == str(item.loan.loan_id)
                self.open_loans[item.loan.reader].discard(item.loan.loan_id)
            else:
                assert result.outcome["loan_id"] is None
            item.status, item.loan, item.transfer, item.destination = LOST, None, None, None

    @precondition(lambda self: self._any(LOST))
    @rule(i=SOME_ITEM, at=PLACE)
    def found(self, i: int | None, at: str) -> None:
        item = self._pick(i, LOST)
        expected = None if item.status == LOST else ItemNotLost
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Found(owner=item.owner, barcode=item.barcode, library=at, actor=desk(at))
            ),
        )
        if result is not None:
            item.status, item.location = ON_SHELF, at

    @precondition(lambda self: all(it.status != WITHDRAWN for it in self.items))
    @rule(i=ITEM, at=PLACE)
    def withdraw(self, i: int, at: str) -> None:
        item = self.items[i]
        expected: type[DomainError] | None = None
        if at != item.owner:
            expected = NotPermitted
        elif not (item.status == LOST or (item.status == ON_SHELF and item.location == item.owner)):
            expected = refusal_for(item.status)
        result = self.run(
            expected,
            lambda: self.app.execute(
                c.Withdraw(
                    owner=item.owner,
                    barcode=item.barcode,
                    reason="worn",
                    library=at,
                    actor=desk(at),
                )
            ),
        )
        if result is not None:
            item.status = WITHDRAWN

    # --------------------------------------------------------------- invariants

    def _load(self, app: Circulation) -> tuple[list[Item], list[Reader]]:
        loaded = app.load([it.id for it in self.items] + self.readers)
        items = [loaded[it.id] for it in self.items]
        readers = [loaded[r] for r in self.readers]
        assert all(isinstance(i, Item) for i in items)
        assert all(isinstance(r, Reader) for r in readers)
        return items, readers  # type: ignore[return-value]

    @invariant()
    def state_matches_model_and_replays_the_same(self) -> None:
        items, readers = self._load(self.app)
        assert self.observer is not None
        other_items, other_readers = self._load(self.observer)
        for model, item, other in zip(self.items, items, other_items, strict=True):
            assert _state(item) == _state(other), "two instances replay differently"
            assert _state(item) == _model_state(model, self.readers), item.barcode
            assert item.version == other.version
        for reader, other in zip(readers, other_readers, strict=True):
            assert reader.open_loans == other.open_loans
            assert reader.version == other.version

    @invariant()
    def every_item_is_in_exactly_one_consistent_state(self) -> None:
        items, _ = self._load(self.app)
        for item in items:
            status = str(item.status)
            assert status in {ON_SHELF, ON_LOAN, AWAITING, IN_TRANSIT, LOST, WITHDRAWN}
            assert (status == ON_LOAN) == (item.loan is not None), item.barcode
            assert (status == IN_TRANSIT) == (item.transfer is not None), item.barcode
            assert (status == AWAITING) == (item.destination is not None), item.barcode
            assert item.location in PLACES
            if item.loan is not None:
                assert item.location == item.loan.library
            if item.transfer is not None:
                assert item.location == item.transfer.from_library
                assert item.transfer.to_library != item.transfer.from_library

    @invariant()
    def readers_hold_exactly_the_items_on_loan_to_them(self) -> None:
        items, readers = self._load(self.app)
        on_loan: dict[UUID, dict[str, UUID]] = {r: {} for r in self.readers}
        for item in items:
            if item.loan is not None:
                on_loan[item.loan.reader_id][str(item.loan.loan_id)] = item.id
        holders = Counter()
        for reader_id, reader in zip(self.readers, readers, strict=True):
            assert dict(reader.open_loans) == on_loan[reader_id]
            assert len(reader.open_loans) <= LIMIT
            holders.update(reader.open_loans.values())
        assert all(count == 1 for count in holders.values()), "an item is on loan twice"
        for n, reader_id in enumerate(self.readers):
            assert {UUID(k) for k in on_loan[reader_id]} == self.open_loans[n]

    @invariant()
    def every_loan_ends_at_most_once(self) -> None:
        opened: Counter[UUID] = Counter()
        ended: Counter[UUID] = Counter()
        reader_opened: Counter[UUID] = Counter()
        reader_closed: Counter[UUID] = Counter()
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT originator_id, originator_version, topic, state FROM circulation_events"
                " WHERE topic LIKE %s OR topic LIKE %s ORDER BY notification_id",
                ("%Item.%", "%Reader.Loan%"),
            ).fetchall()
        for originator_id, version, topic, state in rows:
            event = MAPPER.to_domain_event(_stored(originator_id, version, topic, bytes(state)))
            if isinstance(event, Item.Borrowed):
                opened[event.loan_id] += 1
            elif isinstance(event, Item.Returned) or (
                isinstance(event, Item.DeclaredLost) and event.loan_id is not None
            ):
                ended[event.loan_id] += 1
            elif isinstance(event, Reader.LoanOpened):
                reader_opened[event.loan_id] += 1
            elif isinstance(event, Reader.LoanClosed):
                reader_closed[event.loan_id] += 1
        assert set(opened) == set(self.loan_ids)
        assert all(count == 1 for count in opened.values())
        assert all(count == 1 for count in ended.values()), ended
        assert set(ended) <= set(opened)
        assert reader_opened == opened
        assert reader_closed == ended
        still_open = {loan for loans in self.open_loans.values() for loan in loans}
        assert set(opened) - set(ended) == still_open


def _stored(originator_id: UUID, version: int, topic: str, state: bytes) -> Any:
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(
        originator_id=originator_id, originator_version=version, topic=topic, state=state
    )


def _state(item: Item) -> dict[str, Any]:
    loan = item.loan
    transfer = item.transfer
    return {
        "owner": item.owner,
        "status": str(item.status),
        "location": item.location,
        "destination": item.destination,
        "loan": None
        if loan is None
        else (loan.loan_id, loan.reader_id, loan.library, loan.renewals),
        "transfer": None
        if transfer is None
        else (
            transfer.transfer_id,
            transfer.from_library,
            transfer.to_library,
            str(transfer.resumes),
        ),
    }


def _model_state(model: MItem, readers: list[UUID]) -> dict[str, Any]:
    loan, transfer = model.loan, model.transfer
    return {
        "owner": model.owner,
        "status": model.status,
        "location": model.location,
        "destination": model.destination,
        "loan": None
        if loan is None
        else (loan.loan_id, readers[loan.reader], loan.library, loan.renewals),
        "transfer": None
        if transfer is None
        else (transfer.transfer_id, transfer.from_library, transfer.to_library, transfer.resumes),
    }


def _number(n: int) -> str:
    from tests.helpers import identity_number

    return identity_number(200 + n)


@pytest.mark.parametrize("group_commit", [True, False], ids=["group", "single"])
def test_circulation_invariants(server_dsn: str, template_dsn: str, group_commit: bool) -> None:
    DATABASES.update(server=server_dsn, template=template_dsn)
    machine = type(
        f"LedgerMachine_{'group' if group_commit else 'single'}",
        (LedgerMachine,),
        {"group_commit": group_commit},
    )
    STATS.clear()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            database=None,
        ),
    )
    print(sorted(STATS.items()))

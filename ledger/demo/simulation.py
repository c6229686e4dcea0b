"""A synthetic consortium and its days of circulation, recorded through the real writer.

Shape, not data: 249 member libraries as in ``consortium``; each lends mostly to
its own readers, with a share of cross-library loans (nearby libraries first) and
returns at another library; owners that float keep returned items where they land,
the others have them shipped home. Everything goes through ``Circulation`` — the
same rules, events and idempotency as a desk — from a thread pool, so group commit
batches the work as it would under real load.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from stdnum.cn import ric

from ledger.application import Circulation, Result
from ledger.demo.consortium import LibrarySpec, consortium_libraries
from ledger.domain.common import CONSORTIUM_TZ, Actor, library_id
from ledger.domain.errors import DomainError

ADMIN = Actor(principal="admin:demo")

#: Callers in flight: enough for group commit to fill batches, few enough for 2 cores.
WORKERS = 16


@dataclass(frozen=True)
class Scale:
    days: int = 30
    items_per_library: int = 40
    readers: int = 2000
    loans_per_day: int = 300
    seed: int = 2021

    @property
    def start(self) -> date:
        return datetime.now(CONSORTIUM_TZ).date() - timedelta(days=self.days + 1)


@dataclass
class Summary:
    libraries: int = 0
    items: int = 0
    readers: int = 0
    loans: int = 0
    cross_library_loans: int = 0
    returns: int = 0
    cross_library_returns: int = 0
    floated: int = 0
    transfers_dispatched: int = 0
    transfers_received: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Copy:
    owner: str
    barcode: str
    location: str
    status: str = "on_shelf"
    loan: str | None = None
    borrowed_at: str | None = None
    reader: int | None = None
    transfer: str | None = None
    arrives: date | None = None


def already_loaded(ledger: Circulation) -> bool:
    first = consortium_libraries()[0].code
    return ledger.load([library_id(first)])[library_id(first)] is not None


def identity_number(rng: random.Random, region: str) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    body = f"{region}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def _at(day: date, rng: random.Random) -> datetime:
    local = datetime.combine(day, time(9), CONSORTIUM_TZ) + timedelta(
        seconds=rng.randrange(0, 11 * 3600)
    )
    return local.astimezone(UTC)


class Simulation:
    def __init__(
        self,
        ledger: Circulation,
        scale: Scale,
        progress: Callable[[int, str], None] = lambda n, what: None,
    ) -> None:
        self.ledger = ledger
        self.scale = scale
        self.rng = random.Random(scale.seed)
        self.progress = progress
        self.summary = Summary()
        self.libraries = consortium_libraries()
        self.by_code = {spec.code: spec for spec in self.libraries}
        self.circulating = [s.code for s in self.libraries if s.can_circulate]
        self.neighbours = self._neighbours()
        self.copies: list[_Copy] = []
        self.readers: list[tuple[UUID, str]] = []  # (reader id, home library)
        self.open_loans: defaultdict[int, int] = defaultdict(int)

    # --------------------------------------------------------------- set-up

    def _neighbours(self) -> dict[str, list[str]]:
        groups: defaultdict[str, list[str]] = defaultdict(list)
        for spec in self.libraries:
            if spec.can_circulate:
                groups[spec.parent_code or spec.code].append(spec.code)
        return {
            s.code: [c for c in groups[s.parent_code or s.code] if c != s.code] or self.circulating
            for s in self.libraries
        }

    def _policy(self, spec: LibrarySpec) -> dict[str, Any]:
        floats = spec.level == "county" and self.rng.random() < 0.3
        return {
            "loan_days": 30 if spec.level != "county" else 21,
            "renewals_allowed": 1,
            "renewal_days": 30,
            "return_mode": "float" if floats else "return_to_owner",
        }

    def run(self) -> Summary:
        day0 = self.scale.start
        joins = [
            lambda s=spec: self.ledger.join_library(
                code=s.code,
                name=s.name,
                region=s.region,
                level=s.level,
                policy=self._policy(s),
                can_circulate=s.can_circulate,
                actor=ADMIN,
                occurred_at=_at(day0, self.rng),
                command_id=f"demo-join-{s.code}",
            )
            for spec in self.libraries
        ]
        self.summary.libraries = sum(r is not None for r in self._run(joins, "libraries"))

        items = []
        for spec in self.libraries:
            for n in range(self.scale.items_per_library):
                copy = _Copy(spec.code, f"{spec.code[-6:]}{n:06d}", spec.code)
                self.copies.append(copy)
                items.append(
                    lambda c=copy: self.ledger.register_item(
                        owner=c.owner,
                        barcode=c.barcode,
                        title=f"馆藏图书 {c.barcode}",
                        actor=Actor(f"key:{c.owner}", c.owner),
                        occurred_at=_at(day0, self.rng),
                        command_id=f"demo-item-{c.owner}-{c.barcode}",
                    )
                )
        self.summary.items = sum(r is not None for r in self._run(items, "items"))

        homes = [self.rng.choice(self.circulating) for _ in range(self.scale.readers)]
        numbers = [identity_number(self.rng, self._region_code(home)) for home in homes]
        registrations = [
            lambda h=home, num=number, i=n: self.ledger.register_reader(
                document=self.rng.choice(["resident_id", "social_security_card"]),
                number=num,
                home_library=h,
                actor=Actor(f"key:{h}", h),
                occurred_at=_at(day0, self.rng),
                command_id=f"demo-reader-{i}",
            )
            for n, (home, number) in enumerate(zip(homes, numbers, strict=True))
        ]
        for result, home in zip(self._run(registrations, "readers"), homes, strict=True):
            if result is not None:
                self.readers.append((UUID(result.outcome["reader_id"]), home))
        self.summary.readers = len(self.readers)

        for offset in range(self.scale.days):
            self._day(day0 + timedelta(days=offset + 1))
        return self.summary

    def _region_code(self, code: str) -> str:
        division = self.by_code[code].division_code
        return division if not division.endswith("0000") else division[:2] + "0100"

    # ------------------------------------------------------------------ days

    def _day(self, day: date) -> None:
        rng = self.rng
        actions: list[Callable[[], Result]] = []

        for copy in self.copies:
            if copy.status == "in_transit" and copy.arrives and copy.arrives <= day:
                actions.append(self._receive(copy, day))
            elif copy.status == "on_loan" and rng.random() < 1 / 18:
                actions.append(self._return(copy, day))
            elif copy.status == "awaiting_transfer" and rng.random() < 0.7:
                actions.append(self._dispatch(copy, day))
        self._run(actions, f"{day} returns/transfers")

        shelves: defaultdict[str, list[_Copy]] = defaultdict(list)
        for copy in self.copies:
            if copy.status == "on_shelf":
                shelves[copy.location].append(copy)
        borrows: list[Callable[[], Result]] = []
        taken: set[int] = set()
        for _ in range(self.scale.loans_per_day):
            reader_index = rng.randrange(len(self.readers))
            home = self.readers[reader_index][1]
            roll = rng.random()
            if roll < 0.82:
                at = home
            elif roll < 0.96:
                at = rng.choice(self.neighbours[home])
            else:
                at = rng.choice(self.circulating)
            shelf = shelves.get(at)
            if not shelf or self.open_loans[reader_index] >= 5:
                continue
            copy = shelf.pop(rng.randrange(len(shelf)))
            if id(copy) in taken:
                continue
            taken.add(id(copy))
            borrows.append(self._borrow(copy, reader_index, at, day))
        self._run(borrows, f"{day} loans")

    def _borrow(self, copy: _Copy, reader_index: int, at: str, day: date) -> Callable[[], Result]:
        reader_id, home = self.readers[reader_index]

        def go() -> Result:
            result = self.ledger.borrow(
                owner=copy.owner,
                barcode=copy.barcode,
                library=at,
                reader_id=reader_id,
                actor=Actor(f"key:{at}", at),
                occurred_at=_at(day, self.rng),
                command_id=f"demo-borrow-{copy.owner}-{copy.barcode}-{day}",
            )
            copy.status, copy.loan, copy.borrowed_at = "on_loan", result.outcome["loan_id"], at
            copy.reader = reader_index
            self.open_loans[reader_index] += 1
            self.summary.loans += 1
            self.summary.cross_library_loans += at != home
            return result

        return go

    def _return(self, copy: _Copy, day: date) -> Callable[[], Result]:
        assert copy.borrowed_at is not None
        at = copy.borrowed_at
        roll = self.rng.random()
        if roll < 0.15:
            at = self.rng.choice(self.neighbours[copy.borrowed_at])
        elif roll < 0.22 and copy.reader is not None:
            at = self.readers[copy.reader][1]

        def go() -> Result:
            result = self.ledger.return_item(
                owner=copy.owner,
                barcode=copy.barcode,
                library=at,
                actor=Actor(f"key:{at}", at),
                occurred_at=_at(day, self.rng),
                command_id=f"demo-return-{copy.loan}",
            )
            disposition = result.outcome["disposition"]
            copy.status = "awaiting_transfer" if disposition == "transfer_to_owner" else "on_shelf"
            copy.location = at
            if copy.reader is not None:
                self.open_loans[copy.reader] -= 1
            self.summary.returns += 1
            self.summary.cross_library_returns += at != copy.borrowed_at
            self.summary.floated += disposition == "float"
            copy.loan = copy.borrowed_at = None
            copy.reader = None
            return result

        return go

    def _dispatch(self, copy: _Copy, day: date) -> Callable[[], Result]:
        def go() -> Result:
            result = self.ledger.dispatch(
                owner=copy.owner,
                barcode=copy.barcode,
                from_library=copy.location,
                to_library=copy.owner,
                actor=Actor(f"key:{copy.location}", copy.location),
                occurred_at=_at(day, self.rng),
                command_id=f"demo-dispatch-{copy.owner}-{copy.barcode}-{day}",
            )
            copy.status, copy.transfer = "in_transit", result.outcome["transfer_id"]
            copy.arrives = day + timedelta(days=self.rng.choice([1, 2, 2, 3, 5]))
            self.summary.transfers_dispatched += 1
            return result

        return go

    def _receive(self, copy: _Copy, day: date) -> Callable[[], Result]:
        def go() -> Result:
            assert copy.transfer is not None
            result = self.ledger.receive(
                transfer_id=UUID(copy.transfer),
                library=copy.owner,
                actor=Actor(f"key:{copy.owner}", copy.owner),
                occurred_at=_at(day, self.rng),
                command_id=f"demo-receive-{copy.transfer}",
            )
            copy.status, copy.location, copy.transfer = "on_shelf", copy.owner, None
            self.summary.transfers_received += 1
            return result

        return go

    # ------------------------------------------------------------- plumbing

    def _run(self, actions: Iterable[Callable[[], Result]], what: str) -> list[Result | None]:
        def attempt(action: Callable[[], Result]) -> Result | None:
            try:
                return action()
            except DomainError as error:
                self.summary.refused[error.code] += 1
                return None
            finally:
                self.progress(1, what)

        with ThreadPoolExecutor(WORKERS, thread_name_prefix="demo") as pool:
            return list(pool.map(attempt, list(actions)))

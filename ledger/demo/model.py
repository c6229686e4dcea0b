"""One model of the synthetic consortium and its days of circulation, shared by the demo
(``ledger.demo.simulation``) and the bulk generator (``ledger.demo.bulk``).

The model holds what a simulation needs to decide what happens next — the member
libraries (``consortium``) and the policy each was given (some county libraries float),
the copies and where each is, the readers and their open loans, each library's
neighbours — and plans the work as **phases**: lists of command values
(``ledger.commands``), each with a callback that updates the model from the ledger's
outcome when the ledger accepted the command. A driver runs a phase however it likes (the
demo from a pool of desk threads, the bulk generator through ``execute_many``), then hands
each answer back with ``settle``; the next phase is planned from the updated model.

Set-up is three phases (libraries, items, readers); a day is three:

* arrivals: shipments due today are received at their destination, a few are cancelled
  (to be re-sent the same day);
* returns and transfers: returns (mostly where borrowed, some at a neighbouring library or
  at the reader's home library; the owner's policy decides the disposition, read from the
  outcome), renewals, losses and finds, and dispatches home of the items awaiting transfer;
* loans: readers borrow at their home library mostly, at a neighbour or anywhere sometimes.

All randomness (who, what, where, and every ``occurred_at``) is drawn when a phase is
planned, from one seeded ``random.Random``, and answers are settled in plan order, so a
seed gives the same history whatever order a driver's threads finish in. Commands carry
deterministic ``command_id``\\ s when the model is given a prefix (re-running the same plan is
then idempotent), none otherwise (the ledger generates them).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from stdnum.cn import ric

from ledger import commands as c
from ledger.demo.consortium import LibrarySpec, consortium_libraries
from ledger.domain.common import CONSORTIUM_TZ, Actor
from ledger.domain.errors import DomainError

#: A reader borrows no more than this at once in the simulation (the ledger allows more).
MAX_OPEN_LOANS = 5

#: The consortium administrator, who registers the libraries.
ADMIN = Actor("admin:demo")

Outcome = dict[str, Any]


def identity_number(rng: random.Random, region: str) -> str:
    """A valid 18-character resident identity number from ``region`` (6 digits)."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    body = f"{region}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return body + ric.calc_check_digit(body + "0")


@functools.cache
def desk(code: str) -> Actor:
    """The key of a library's desk."""
    return Actor(f"key:{code}", code)


@dataclass
class Summary:
    """What the ledger accepted (and refused) of the model's plans."""

    libraries: int = 0
    items: int = 0
    readers: int = 0
    loans: int = 0
    cross_library_loans: int = 0
    returns: int = 0
    cross_library_returns: int = 0
    floated: int = 0
    renewals: int = 0
    transfers_dispatched: int = 0
    transfers_received: int = 0
    transfers_cancelled: int = 0
    lost: int = 0
    found: int = 0
    refused: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Copy:
    """One physical copy as the model sees it (the ledger's ``Item``, in short)."""

    owner: str
    barcode: str
    location: str
    registered: bool = False
    status: str = "on_shelf"  # on_shelf | on_loan | awaiting_transfer | in_transit | lost
    loan_id: UUID | None = None
    lender: str | None = None  # the library that lent it
    reader: ReaderSlot | None = None
    renewals: int = 0
    transfer_id: UUID | None = None
    arrives: date | None = None
    resend: bool = False  # its shipment was cancelled: re-sent at the next dispatch


@dataclass(slots=True)
class ReaderSlot:
    reader_id: UUID
    home: str
    registered: bool = False
    open_loans: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """A planned command and what to do with its outcome once the ledger accepted it."""

    command: c.Command
    accepted: Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    steps: list[Step]

    @property
    def commands(self) -> list[c.Command]:
        return [step.command for step in self.steps]


class Model:
    """The consortium, its copies and readers, and plans of what happens to them."""

    def __init__(
        self,
        *,
        seed: int = 2021,
        items_per_library: int = 40,
        readers: int = 2000,
        loans_per_day: int = 300,
        command_ids: str | None = None,
        admin: Actor = ADMIN,
    ) -> None:
        self.rng = random.Random(seed)
        self.items_per_library = items_per_library
        self.reader_count = readers
        self.loans_per_day = loans_per_day
        self.prefix = command_ids
        self.admin = admin
        self.summary = Summary()
        self.libraries: list[LibrarySpec] = consortium_libraries()
        self.by_code = {spec.code: spec for spec in self.libraries}
        self.circulating = [s.code for s in self.libraries if s.can_circulate]
        self.neighbours = self._neighbours()
        self.policies: dict[str, dict[str, Any]] = {}
        self.copies: list[Copy] = []
        self.readers: list[ReaderSlot] = []

    def _neighbours(self) -> dict[str, list[str]]:
        """The circulating libraries under the same parent (all of them if there are none)."""
        groups: dict[str, list[str]] = {}
        for spec in self.libraries:
            if spec.can_circulate:
                groups.setdefault(spec.parent_code or spec.code, []).append(spec.code)
        return {
            s.code: [x for x in groups.get(s.parent_code or s.code, []) if x != s.code]
            or self.circulating
            for s in self.libraries
        }

    # ------------------------------------------------------------ settling

    def settle(self, step: Step, answer: Any) -> None:
        """Apply one answer of the ledger (a ``Result`` or the exception that refused the
        command). A refusal by the rules is counted; any other exception is raised."""
        if isinstance(answer, DomainError):
            self.summary.refused[answer.code] = self.summary.refused.get(answer.code, 0) + 1
        elif isinstance(answer, BaseException):
            raise answer
        else:
            step.accepted(answer.outcome)

    def settle_all(self, phase: Phase, answers: Sequence[Any]) -> None:
        """Settle a phase's answers, in plan order (whatever order they arrived in)."""
        if len(answers) != len(phase.steps):
            raise ValueError(f"{len(answers)} answers for {len(phase.steps)} commands")
        for step, answer in zip(phase.steps, answers, strict=True):
            self.settle(step, answer)

    # ------------------------------------------------------------- helpers

    def _id(self, *parts: object) -> str | None:
        return "-".join([self.prefix, *map(str, parts)]) if self.prefix else None

    def _at(self, day: date, start_hour: int, end_hour: int) -> datetime:
        """A desk time on ``day`` between the hours (consortium time), in UTC."""
        local = datetime.combine(day, time(start_hour), CONSORTIUM_TZ) + timedelta(
            seconds=self.rng.randrange(0, (end_hour - start_hour) * 3600)
        )
        return local.astimezone(UTC)

    def _region(self, code: str) -> str:
        """The division code a reader of this library was born in (a city, not a province)."""
        division = self.by_code[code].division_code
        return division if not division.endswith("0000") else division[:2] + "0100"

    # --------------------------------------------------------------- set-up

    def setup(self, day0: date) -> Iterator[Phase]:
        """Libraries join, register their copies, and readers register at their home."""
        yield self._libraries(day0)
        yield self._items(day0)
        yield self._readers(day0)

    def _libraries(self, day0: date) -> Phase:
        steps = []
        for spec in self.libraries:
            floats = spec.level == "county" and self.rng.random() < 0.3
            policy = {
                "loan_days": 30 if spec.level != "county" else 21,
                "renewals_allowed": 1,
                "renewal_days": 30,
                "return_mode": "float" if floats else "return_to_owner",
            }
            self.policies[spec.code] = policy
            steps.append(
                Step(
                    c.JoinLibrary(
                        code=spec.code,
                        name=spec.name,
                        region=spec.region,
                        level=spec.level,
                        policy=policy,
                        can_circulate=spec.can_circulate,
                        actor=self.admin,
                        occurred_at=self._at(day0, 8, 9),
                        command_id=self._id("join", spec.code),
                    ),
                    self._joined,
                )
            )
        return Phase("libraries", steps)

    def _joined(self, outcome: Outcome) -> None:
        self.summary.libraries += 1

    def _items(self, day0: date) -> Phase:
        steps = []
        for spec in self.libraries:
            for n in range(self.items_per_library):
                copy = Copy(spec.code, f"{spec.code[-6:]}{n:06d}", spec.code)
                self.copies.append(copy)
                steps.append(
                    Step(
                        c.RegisterItem(
                            owner=copy.owner,
                            barcode=copy.barcode,
                            title=f"馆藏图书 {copy.barcode}",
                            actor=desk(copy.owner),
                            occurred_at=self._at(day0, 9, 12),
                            command_id=self._id("item", copy.owner, copy.barcode),
                        ),
                        lambda outcome, copy=copy: self._registered_item(copy),
                    )
                )
        return Phase("items", steps)

    def _registered_item(self, copy: Copy) -> None:
        copy.registered = True
        self.summary.items += 1

    def _readers(self, day0: date) -> Phase:
        steps = []
        seen: set[str] = set()
        rng = self.rng
        while len(self.readers) < self.reader_count:
            home = rng.choice(self.circulating)
            number = identity_number(rng, self._region(home))
            if number in seen:  # the same person drawn twice: draw another
                continue
            seen.add(number)
            slot = ReaderSlot(UUID(int=rng.getrandbits(128), version=4), home)
            self.readers.append(slot)
            steps.append(
                Step(
                    c.RegisterReader(
                        document=rng.choice(["resident_id", "social_security_card"]),
                        number=number,
                        reader_id=slot.reader_id,
                        library=home,
                        actor=desk(home),
                        occurred_at=self._at(day0, 12, 20),
                        command_id=self._id("reader", len(self.readers)),
                    ),
                    lambda outcome, slot=slot: self._registered_reader(slot, outcome),
                )
            )
        return Phase("readers", steps)

    def _registered_reader(self, slot: ReaderSlot, outcome: Outcome) -> None:
        # A person registered before keeps the reader (and home) they have.
        slot.reader_id = UUID(outcome["reader_id"])
        slot.home = outcome.get("home_library") or slot.home
        slot.registered = True
        self.summary.readers += 1

    # ----------------------------------------------------------------- days

    def day(self, day: date) -> Iterator[Phase]:
        """The day's phases, each planned once the previous one is settled."""
        yield self._arrivals(day)
        yield self._returns_and_transfers(day)
        yield self._loans(day)

    def _arrivals(self, day: date) -> Phase:
        steps = []
        for copy in self.copies:
            if copy.status != "in_transit" or copy.arrives is None or copy.arrives > day:
                continue
            assert copy.transfer_id is not None
            if self.rng.random() < 0.03:  # the van's plan changed: cancelled, re-sent today
                at = copy.location
                command: c.Command = c.CancelTransfer(
                    owner=copy.owner,
                    barcode=copy.barcode,
                    transfer_id=copy.transfer_id,
                    reason="plan_changed",
                    note="re-sent with the next van",
                    library=at,
                    actor=desk(at),
                    occurred_at=self._at(day, 9, 11),
                    command_id=self._id("cancel", copy.owner, copy.barcode, day),
                )
                steps.append(Step(command, lambda o, copy=copy: self._cancelled(copy)))
            else:
                command = c.Receive(
                    owner=copy.owner,
                    barcode=copy.barcode,
                    transfer_id=copy.transfer_id,
                    library=copy.owner,
                    actor=desk(copy.owner),
                    occurred_at=self._at(day, 9, 11),
                    command_id=self._id("receive", copy.owner, copy.barcode, day),
                )
                steps.append(Step(command, lambda o, copy=copy: self._received(copy)))
        return Phase(f"{day} arrivals", steps)

    def _cancelled(self, copy: Copy) -> None:
        copy.status, copy.transfer_id, copy.arrives, copy.resend = (
            "awaiting_transfer",
            None,
            None,
            True,
        )
        self.summary.transfers_cancelled += 1

    def _received(self, copy: Copy) -> None:
        copy.status, copy.location, copy.transfer_id, copy.arrives = (
            "on_shelf",
            copy.owner,
            None,
            None,
        )
        self.summary.transfers_received += 1

    def _returns_and_transfers(self, day: date) -> Phase:
        rng = self.rng
        steps = []
        for copy in self.copies:
            status = copy.status
            if status == "on_loan":
                roll = rng.random()
                if roll < 1 / 18:
                    steps.append(self._return(copy, day))
                elif roll < 1 / 18 + 1 / 60 and copy.renewals < 1:
                    steps.append(self._renew(copy, day))
                elif roll > 1 - 1 / 5000:
                    steps.append(self._lose(copy, day))
            elif status == "awaiting_transfer":
                if copy.resend or rng.random() < 0.7:
                    steps.append(self._dispatch(copy, day))
            elif status == "lost" and rng.random() < 1 / 30:
                steps.append(self._find(copy, day))
        return Phase(f"{day} returns/transfers", steps)

    def _return(self, copy: Copy, day: date) -> Step:
        assert copy.lender is not None
        lender, at = copy.lender, copy.lender
        roll = self.rng.random()
        if roll < 0.15:
            at = self.rng.choice(self.neighbours[lender])
        elif roll < 0.22 and copy.reader is not None:
            at = copy.reader.home
        command = c.Return(
            owner=copy.owner,
            barcode=copy.barcode,
            library=at,
            actor=desk(at),
            occurred_at=self._at(day, 9, 14),
            command_id=self._id("return", copy.owner, copy.barcode, day),
        )

        def returned(outcome: Outcome) -> None:
            disposition = outcome["disposition"]  # the owner's policy decided it
            copy.status = "awaiting_transfer" if disposition == "transfer_to_owner" else "on_shelf"
            copy.location = at
            self._close_loan(copy)
            self.summary.returns += 1
            self.summary.cross_library_returns += at != lender
            self.summary.floated += disposition == "float"

        return Step(command, returned)

    def _close_loan(self, copy: Copy) -> None:
        if copy.reader is not None:
            copy.reader.open_loans -= 1
        copy.loan_id = copy.lender = copy.reader = None
        copy.renewals = 0

    def _renew(self, copy: Copy, day: date) -> Step:
        assert copy.loan_id is not None and copy.lender is not None
        at = copy.lender
        command = c.Renew(
            owner=copy.owner,
            barcode=copy.barcode,
            loan_id=copy.loan_id,
            library=at,
            actor=desk(at),
            occurred_at=self._at(day, 9, 14),
            command_id=self._id("renew", copy.owner, copy.barcode, day),
        )

        def renewed(outcome: Outcome) -> None:
            copy.renewals += 1
            self.summary.renewals += 1

        return Step(command, renewed)

    def _lose(self, copy: Copy, day: date) -> Step:
        assert copy.lender is not None
        at = copy.lender
        command = c.DeclareLost(
            owner=copy.owner,
            barcode=copy.barcode,
            reason="not returned",
            library=at,
            actor=desk(at),
            occurred_at=self._at(day, 9, 14),
            command_id=self._id("lost", copy.owner, copy.barcode, day),
        )

        def lost(outcome: Outcome) -> None:
            copy.status = "lost"
            self._close_loan(copy)
            self.summary.lost += 1

        return Step(command, lost)

    def _find(self, copy: Copy, day: date) -> Step:
        at = copy.location
        command = c.Found(
            owner=copy.owner,
            barcode=copy.barcode,
            library=at,
            actor=desk(at),
            occurred_at=self._at(day, 9, 14),
            command_id=self._id("found", copy.owner, copy.barcode, day),
        )

        def found(outcome: Outcome) -> None:
            copy.status, copy.location = "on_shelf", at
            self.summary.found += 1

        return Step(command, found)

    def _dispatch(self, copy: Copy, day: date) -> Step:
        at = copy.location
        arrives = day + timedelta(days=self.rng.choice([1, 2, 2, 3, 5]))
        command = c.Dispatch(
            owner=copy.owner,
            barcode=copy.barcode,
            library=at,
            to_library=copy.owner,
            actor=desk(at),
            occurred_at=self._at(day, 11, 14),
            command_id=self._id("dispatch", copy.owner, copy.barcode, day),
        )

        def dispatched(outcome: Outcome) -> None:
            copy.status, copy.transfer_id = "in_transit", UUID(outcome["transfer_id"])
            copy.arrives, copy.resend = arrives, False
            self.summary.transfers_dispatched += 1

        return Step(command, dispatched)

    def _loans(self, day: date) -> Phase:
        rng = self.rng
        shelves: dict[str, list[Copy]] = {}
        for copy in self.copies:
            if copy.status == "on_shelf" and copy.registered:
                shelves.setdefault(copy.location, []).append(copy)
        readers = [slot for slot in self.readers if slot.registered]
        planned: dict[int, int] = {}  # loans planned today, by reader
        steps = []
        for _ in range(self.loans_per_day if readers else 0):
            index = rng.randrange(len(readers))
            reader = readers[index]
            roll = rng.random()
            if roll < 0.82:
                at = reader.home
            elif roll < 0.96:
                at = rng.choice(self.neighbours[reader.home])
            else:
                at = rng.choice(self.circulating)
            shelf = shelves.get(at)
            if not shelf or reader.open_loans + planned.get(index, 0) >= MAX_OPEN_LOANS:
                continue
            copy = shelf.pop(rng.randrange(len(shelf)))
            planned[index] = planned.get(index, 0) + 1
            steps.append(self._borrow(copy, reader, at, day))
        return Phase(f"{day} loans", steps)

    def _borrow(self, copy: Copy, reader: ReaderSlot, at: str, day: date) -> Step:
        command = c.Borrow(
            owner=copy.owner,
            barcode=copy.barcode,
            reader_id=reader.reader_id,
            library=at,
            actor=desk(at),
            occurred_at=self._at(day, 14, 20),
            command_id=self._id("borrow", copy.owner, copy.barcode, day),
        )

        def borrowed(outcome: Outcome) -> None:
            copy.status, copy.loan_id, copy.lender = "on_loan", UUID(outcome["loan_id"]), at
            copy.location, copy.reader, copy.renewals = at, reader, 0
            reader.open_loans += 1
            self.summary.loans += 1
            self.summary.cross_library_loans += at != reader.home

        return Step(command, borrowed)

"""``tongjie demo``: the synthetic consortium and its days of circulation, recorded through
the real writer as member libraries' desks would record them.

What happens is planned by the shared model (``ledger.demo.model``): 249 member libraries
as in ``consortium``, each lending mostly to its own readers, with a share of
cross-library loans (nearby libraries first) and returns at another library; owners
that float keep returned items where they land, the others have them shipped home. This
driver runs each planned phase through ``Circulation.execute`` from a pool of ``WORKERS``
desk threads, one command per call, so group commit batches the work as it would under
real load; commands carry deterministic ids (``demo-…``), so a re-run is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ledger import commands as c
from ledger.demo.consortium import consortium_libraries
from ledger.demo.model import ADMIN, Model, Phase, Summary, identity_number
from ledger.domain.common import CONSORTIUM_TZ, library_id
from ledger.domain.errors import DomainError
from ledger.write import Result, Writer

__all__ = [
    "ADMIN",
    "WORKERS",
    "Scale",
    "Simulation",
    "Summary",
    "already_loaded",
    "identity_number",
]

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
        """The set-up day: the simulated days run from the day after it up to yesterday."""
        return datetime.now(CONSORTIUM_TZ).date() - timedelta(days=self.days + 1)


def already_loaded(ledger: Writer) -> bool:
    first = consortium_libraries()[0].code
    return ledger.load([library_id(first)])[library_id(first)] is not None


class Simulation:
    def __init__(
        self,
        ledger: Writer,
        scale: Scale,
        progress: Callable[[int, str], None] = lambda n, what: None,
    ) -> None:
        self.ledger = ledger
        self.scale = scale
        self.progress = progress
        self.model = Model(
            seed=scale.seed,
            items_per_library=scale.items_per_library,
            readers=scale.readers,
            loans_per_day=scale.loans_per_day,
            command_ids="demo",
        )

    @property
    def summary(self) -> Summary:
        return self.model.summary

    def run(self) -> Summary:
        day0 = self.scale.start
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="demo") as desks:
            for phase in self.model.setup(day0):
                self._run(desks, phase)
            for offset in range(self.scale.days):
                for phase in self.model.day(day0 + timedelta(days=offset + 1)):
                    self._run(desks, phase)
        return self.model.summary

    def _run(self, desks: Executor, phase: Phase) -> None:
        """Every command of the phase from the desks at once; answers settled in plan order."""

        def attempt(command: c.Command) -> Result | DomainError:
            try:
                return self.ledger.execute(command)
            except DomainError as error:
                return error
            finally:
                self.progress(1, phase.name)

        self.model.settle_all(phase, list(desks.map(attempt, phase.commands)))

"""Group commit: commands that arrive together are saved in one transaction.

eventsourcing's recorder takes one table lock per save, so one command per
transaction tops out near the single-row commit rate. A committer thread drains
whatever is queued (up to ``MAX_BATCH``), runs the batch through a callable that
checks each command on its own and saves the survivors at once, and hands each
caller its own answer. A failing command is answered alone and never blocks the rest.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

#: Large enough to amortise a commit over many commands, small enough that one
#: transaction (and its table lock) stays short: 256 commands ≈ a few ms of work.
MAX_BATCH = 256

#: How long a batch waits for the callers of the previous batch to come back, as a
#: share of the previous batch's duration (capped): callers answered together come
#: back together, and a few ms of waiting doubles what one commit carries. Only spent
#: while fewer than that many have arrived, so a lone caller never waits.
GATHER_SHARE = 0.25
MAX_GATHER_SECONDS = 0.005

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    def __init__(
        self, run_batch: Callable[[Sequence[T]], Sequence[R | BaseException]], name: str
    ) -> None:
        self._run_batch = run_batch
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, item: T) -> R:
        if self._closed:
            raise RuntimeError("the ledger is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future.result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        expected = 1  # callers answered last round: most come straight back with more
        gather = 0.0
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            deadline = time.perf_counter() + gather
            while len(batch) < MAX_BATCH:
                try:
                    if len(batch) < expected:
                        remaining = deadline - time.perf_counter()
                        nxt = self._queue.get(timeout=remaining) if remaining > 0 else None
                        if nxt is None and remaining <= 0:
                            raise queue.Empty
                    else:
                        nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            ran = time.perf_counter()
            try:
                results = self._run_batch([item for item, _ in batch])
            except BaseException as error:
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            expected = len(batch)
            gather = min(MAX_GATHER_SECONDS, GATHER_SHARE * (time.perf_counter() - ran))
            if stop:
                return

"""The bulk generator's saving process: saves handed over a pipe, one at a time, in order.

``python -m ledger.demo.saver`` reads frames from stdin — an 8-byte length and a pickle —
and answers each on stdout the same way. The first frame is ``(dsn, chain_events)``;
each next one is ``(events, write_set)``, saved in one transaction through the ledger's
event store (``PostgresUnitOfWork.commit``: the recorder's chain, Merkle, command-log,
reference and identity rows with the events) and answered ``("saved", count)`` or
``("failed", exception)``. End of input closes the store and ends the process.

A process of its own (not ``multiprocessing``, which would re-run the caller's main
module) so that encoding, chaining and sending a save run beside the writer, on another
core, instead of taking turns with it under one interpreter lock.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import IO, Any

HEADER = struct.Struct("!Q")


def write_frame(stream: IO[bytes], value: Any) -> None:
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(blob)))
    stream.write(blob)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next value, or EOFError when the other end closed."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    (size,) = HEADER.unpack(header)
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError
    return pickle.loads(blob)


def main() -> None:
    from ledger.store import eventsourcing_env
    from ledger.write.postgres import PostgresUnitOfWork
    from ledger.write.recorder import LedgerRecorder

    source = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break a frame
    dsn, chain_events = read_frame(source)
    LedgerRecorder.chain_events = chain_events  # as the parent has it (benchmarks/verify.py)
    store = PostgresUnitOfWork(eventsourcing_env(dsn, pool_size=1))
    try:
        while True:
            try:
                events, write_set = read_frame(source)
            except EOFError:
                return
            try:
                store.commit(events, write_set)
            except Exception as error:  # answered: the parent raises it
                write_frame(answers, ("failed", _portable(error)))
            else:
                write_frame(answers, ("saved", len(events)))
    finally:
        store.close()


def _portable(error: Exception) -> Exception:
    """The error itself if it survives a pickle, else its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


if __name__ == "__main__":
    main()

"""Shared test helpers: a small consortium, identity numbers, raw looks at the database.

Both tiers import this module: the domain tier (``tests/domain``, the writer on its
in-memory unit of work) and the PostgreSQL tier. So nothing here needs a database
until a PostgreSQL helper (``count_events``, ``count_rows``, ``topics``) is called,
and the ledger helpers take anything with ``execute`` (see ``Ledger``). Identity
numbers are built with the GB 11643-1999 check character written out independently
of the code under test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.domain.common import Actor, item_id
from ledger.domain.errors import DomainError
from ledger.domain.items import Item
from ledger.domain.readers import Reader

ADMIN = Actor(principal="admin:test")
IDENTITY_KEY = bytes(range(32))


class Ledger(Protocol):
    """What the helpers use of a writer: the PostgreSQL one or the in-memory one."""

    def execute(self, command: c.Command) -> Any: ...

    def get_item(self, owner: str, barcode: str) -> Item | None: ...

    def load(self, ids: Iterable[UUID]) -> dict[UUID, Any]: ...


# Member libraries used by the tests: two that want their items back, one that lets
# its items float, and one (Meigu county) that is a member but cannot circulate yet.
CHENGDU = "SC-510100"  # 成都市图书馆, return_to_owner
YUZHONG = "CQ-500103"  # 渝中区图书馆, return_to_owner
JINJIANG = "SC-510104"  # 锦江区图书馆, float
MEIGU = "SC-513436"  # 美姑县图书馆, not circulating

LIBRARIES: dict[str, dict[str, Any]] = {
    CHENGDU: {
        "name": "成都市图书馆",
        "region": "sichuan",
        "level": "prefecture",
        "policy": {"loan_days": 30, "renewals_allowed": 1, "return_mode": "return_to_owner"},
    },
    YUZHONG: {
        "name": "渝中区图书馆",
        "region": "chongqing",
        "level": "county",
        "policy": {"loan_days": 21, "renewals_allowed": 2, "return_mode": "return_to_owner"},
    },
    JINJIANG: {
        "name": "锦江区图书馆",
        "region": "sichuan",
        "level": "county",
        "policy": {"loan_days": 14, "renewals_allowed": 1, "return_mode": "float"},
    },
    MEIGU: {
        "name": "美姑县图书馆",
        "region": "sichuan",
        "level": "county",
        "policy": {},
        "can_circulate": False,
    },
}


def desk(code: str) -> Actor:
    """The API key of one library's desk."""
    return Actor(principal=f"key:{code}", library=code)


def join_all(ledger: Ledger, codes: list[str] | None = None) -> None:
    for code in codes or list(LIBRARIES):
        spec = LIBRARIES[code]
        ledger.execute(
            c.JoinLibrary(
                code=code,
                name=spec["name"],
                region=spec["region"],
                level=spec["level"],
                policy=spec["policy"],
                can_circulate=spec.get("can_circulate", True),
                actor=ADMIN,
            )
        )


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2, as GB 11643-1999 spells it out."""
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(w * int(d) for w, d in zip(weights, first17, strict=True))
    return "10X98765432"[total % 11]


def identity_number(sequence: int, *, region: str = "510104", born: date | None = None) -> str:
    """A valid resident identity number; different sequences give different people."""
    born = born or date(1980 + sequence % 30, 1 + sequence % 12, 1 + sequence % 28)
    body = f"{region}{born:%Y%m%d}{sequence % 1000:03d}"
    return body + check_char(body)


def wrong_check_char(number: str) -> str:
    good = number[-1]
    bad = next(ch for ch in "0123456789X" if ch != good)
    return number[:-1] + bad


def register_reader(ledger: Ledger, sequence: int, home: str = CHENGDU) -> UUID:
    result = ledger.execute(
        c.RegisterReader(
            document="resident_id",
            number=identity_number(sequence),
            library=home,
            actor=desk(home),
        )
    )
    return UUID(result.outcome["reader_id"])


def register_item(ledger: Ledger, owner: str, barcode: str, title: str = "三体") -> UUID:
    ledger.execute(c.RegisterItem(owner=owner, barcode=barcode, title=title, actor=desk(owner)))
    return item_id(owner, barcode)


def count_events(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM circulation_events").fetchone()
    assert row is not None
    return int(row[0])


def count_rows(dsn: str, table: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def stream(ledger: Any, aggregate_id: UUID) -> list[Any]:
    """An aggregate's events as the event log gives them back, oldest first."""
    from ledger.eventlog import EventLog

    return [r.event for r in EventLog(ledger.pool).stream(aggregate_id)]


def topics(dsn: str) -> Counter[str]:
    """How many events of each class are stored (the topic's qualified name)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT topic FROM circulation_events").fetchall()
    return Counter(topic.split(":")[-1] for (topic,) in rows)


def now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------ the rules' helpers


def _recorded(where: Any) -> tuple[int, int]:
    """Events and command_log rows so far: in the database ``where`` names (a dsn), or
    in the domain tier's in-memory unit of work."""
    if isinstance(where, str):
        return count_events(where), count_rows(where, "command_log")
    return len(where.events), len(where.command_log)


def refused(
    where: Any, error: type[DomainError], action: Callable[[], Any], *, field: str | None = None
) -> DomainError:
    """Run ``action``; it must raise exactly ``error`` and leave the ledger as it was.

    ``where`` is the PostgreSQL tier's dsn or the domain tier's unit of work.
    """
    events, commands = _recorded(where)
    with pytest.raises(DomainError) as caught:
        action()
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    after_events, after_commands = _recorded(where)
    assert after_events == events, "a refused command recorded events"
    assert after_commands == commands, "a refused command wrote a command_log row"
    if field is not None:
        assert caught.value.field == field
    return caught.value


def borrow(app: Ledger, owner: str, barcode: str, at: str, reader: UUID, **kw: Any) -> Any:
    return app.execute(
        c.Borrow(owner=owner, barcode=barcode, library=at, reader_id=reader, actor=desk(at), **kw)
    )


def give_back(app: Ledger, owner: str, barcode: str, at: str, **kw: Any) -> Any:
    return app.execute(c.Return(owner=owner, barcode=barcode, library=at, actor=desk(at), **kw))


def item(app: Ledger, owner: str, barcode: str) -> Item:
    found = app.get_item(owner, barcode)
    assert found is not None
    return found


def reader(app: Ledger, reader_id: UUID) -> Reader:
    loaded = app.load([reader_id])[reader_id]
    assert isinstance(loaded, Reader)
    return loaded


def assert_envelope(event: Any, *, library: str, owner: str, holding: str, command_id: str) -> None:
    assert event.library == library
    assert event.owner == owner
    assert event.holding == holding
    assert event.recorded_by == f"key:{library}"
    assert event.command_id == command_id
    assert event.occurred_at.tzinfo is not None


# ------------------------------------------------------------------------ disputes

SHA = "ab" * 32


def shipped(app: Ledger, barcode: str = "B1", days_ago: int = 20) -> UUID:
    """A Chengdu item lent, returned at Yuzhong, shipped home ``days_ago`` days ago."""
    register_item(app, CHENGDU, barcode)
    reader = register_reader(app, hash(barcode) % 900 + 1)
    at = now() - timedelta(days=days_ago + 5)
    app.execute(
        c.Borrow(
            owner=CHENGDU,
            barcode=barcode,
            library=CHENGDU,
            reader_id=reader,
            actor=desk(CHENGDU),
            occurred_at=at,
        )
    )
    app.execute(
        c.Return(
            owner=CHENGDU,
            barcode=barcode,
            library=YUZHONG,
            actor=desk(YUZHONG),
            occurred_at=at + timedelta(days=2),
        )
    )
    result = app.execute(
        c.Dispatch(
            owner=CHENGDU,
            barcode=barcode,
            library=YUZHONG,
            to_library=CHENGDU,
            actor=desk(YUZHONG),
            occurred_at=now() - timedelta(days=days_ago),
        )
    )
    return UUID(result.outcome["transfer_id"])


def open_dispute(app: Ledger, barcode: str = "B1", **overrides: Any) -> UUID:
    """Chengdu opens a not-received dispute against Yuzhong (``overrides`` change it)."""
    arguments = {
        "owner": CHENGDU,
        "barcode": barcode,
        "kind": "not_received",
        "other_party": YUZHONG,
        "statement": "渝中区说已寄回，我们没有收到。",
        "library": CHENGDU,
        "actor": desk(CHENGDU),
        **overrides,
    }
    return UUID(app.execute(c.OpenDispute(**arguments)).outcome["dispute_id"])

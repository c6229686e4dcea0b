"""Shared test helpers: a small consortium, identity numbers, raw looks at the database.

Nothing here asserts anything; the tests do. Identity numbers are built with the
GB 11643-1999 check character written out independently of the code under test.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg

from ledger.application import Circulation
from ledger.domain.common import Actor, item_id
from tests.conftest import ADMIN

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


def join_all(ledger: Circulation, codes: list[str] | None = None) -> None:
    for code in codes or list(LIBRARIES):
        spec = LIBRARIES[code]
        ledger.join_library(
            code=code,
            name=spec["name"],
            region=spec["region"],
            level=spec["level"],
            policy=spec["policy"],
            can_circulate=spec.get("can_circulate", True),
            actor=ADMIN,
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


def register_reader(ledger: Circulation, sequence: int, home: str = CHENGDU) -> UUID:
    result = ledger.register_reader(
        document="resident_id",
        number=identity_number(sequence),
        home_library=home,
        actor=desk(home),
    )
    return UUID(result.outcome["reader_id"])


def register_item(ledger: Circulation, owner: str, barcode: str, title: str = "三体") -> UUID:
    ledger.register_item(owner=owner, barcode=barcode, title=title, actor=desk(owner))
    return item_id(owner, barcode)


def count_events(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM circulation_events").fetchone()
    assert row is not None
    return int(row[0])


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def stream(ledger: Circulation, aggregate_id: UUID) -> list[Any]:
    """An aggregate's events as the event store gives them back, oldest first."""
    return list(ledger.events.get(aggregate_id))


def topics(dsn: str) -> Counter[str]:
    """How many events of each class are stored (the topic's qualified name)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT topic FROM circulation_events").fetchall()
    return Counter(topic.split(":")[-1] for (topic,) in rows)


def now() -> datetime:
    return datetime.now(UTC)

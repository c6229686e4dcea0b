"""``tongjie serve --example-key`` (``make run``): each start prints a new desk key for the
example desk and revokes the previous start's, so at most one example key is live."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from ledger.cli import main, service
from ledger.keys import authenticate, create_key, list_keys, replace_key
from tests.conftest import IDENTITY_KEY, open_ledger
from tests.helpers import CHENGDU, join_all

assert service.EXAMPLE_DESK == CHENGDU


class _NoServer:
    def __init__(self, *args: object) -> None:
        pass

    def run(self) -> None:
        pass


@pytest.fixture
def start(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], str]]:
    """``tongjie serve --example-key`` up to where it would serve, returning the token it
    printed (gunicorn and the background processes are not started)."""
    ledger = open_ledger(dsn)
    join_all(ledger, [CHENGDU])
    ledger.close()
    monkeypatch.setattr(service, "_Gunicorn", _NoServer)
    monkeypatch.setattr(service, "_start_background", lambda settings: [])
    env = {
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_DATA_DIR": str(tmp_path),
        "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex(),
    }

    def serve() -> str:
        result = CliRunner().invoke(
            main, ["serve", "--example-key"], env=env, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        token = re.search(r"export TJ_KEY=(\S+)", result.output)
        assert token, result.output
        return token.group(1)

    yield serve


def _live_examples(conn: psycopg.Connection) -> list[str]:
    return [
        k.key_id
        for k in list_keys(conn)
        if k.label == service.EXAMPLE_LABEL and k.library == CHENGDU and k.revoked_at is None
    ]


def test_two_starts_leave_one_live_example_key(start, dsn: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, desk_token = create_key(conn, library=CHENGDU, label="circulation desk")
        _, admin_token = create_key(conn, library=None, label=service.EXAMPLE_LABEL)

    first = start()
    second = start()

    assert first != second
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert _live_examples(conn) == [second.split("_")[1]]
        assert authenticate(conn, first) is None  # the previous example key is revoked
        live = authenticate(conn, second)
        assert live is not None and live.library == CHENGDU
        # Other keys are left alone: another label at the same desk, another "library".
        assert authenticate(conn, desk_token) is not None
        assert authenticate(conn, admin_token) is not None
        revoked = [k for k in list_keys(conn) if k.revoked_at is not None]
        assert [k.key_id for k in revoked] == [first.split("_")[1]]  # kept for the audit trail


def test_concurrent_replacements_leave_one_live_key(dsn: str) -> None:
    barrier = threading.Barrier(4)
    tokens: list[str] = []

    def replace() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait()
            tokens.append(replace_key(conn, library=CHENGDU, label=service.EXAMPLE_LABEL)[1])

    for _ in range(5):
        threads = [threading.Thread(target=replace) for _ in range(barrier.parties)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert len(_live_examples(conn)) == 1
            assert sum(authenticate(conn, t) is not None for t in tokens) == 1

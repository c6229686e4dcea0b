"""``tongjie keys``: created for a member library or the administrator, shown once, stored
hashed, listed without secrets, revoked at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from ledger.cli import main
from ledger.keys import authenticate
from tests.conftest import IDENTITY_KEY, open_ledger
from tests.helpers import CHENGDU, join_all


@pytest.fixture
def run(dsn: str, tmp_path: Path) -> Iterator[object]:
    ledger = open_ledger(dsn)
    join_all(ledger, [CHENGDU])
    ledger.close()
    env = {
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_DATA_DIR": str(tmp_path),
        "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex(),
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    yield invoke


def test_a_key_is_shown_once_and_only_its_hash_is_kept(run, dsn: str) -> None:  # type: ignore[no-untyped-def]
    created = run("keys", "create", "--library", CHENGDU, "--label", "circulation desk")
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    with psycopg.connect(dsn) as conn:
        key = authenticate(conn, token)
        stored = conn.execute("SELECT * FROM api_keys").fetchall()
    assert key is not None and key.library == CHENGDU
    assert token.split("_", 2)[2] not in repr(stored)

    listed = run("keys", "list")
    assert key_id in listed.output and "circulation desk" in listed.output
    assert token not in listed.output and "live" in listed.output


def test_a_revoked_key_no_longer_authenticates(run, dsn: str) -> None:  # type: ignore[no-untyped-def]
    token = run("keys", "create", "--admin").output.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    assert run("keys", "revoke", key_id).exit_code == 0
    with psycopg.connect(dsn) as conn:
        assert authenticate(conn, token) is None
    assert "revoked" in run("keys", "list").output
    again = run("keys", "revoke", key_id)
    assert again.exit_code != 0 and "no live key" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--library", "CQ-500103"], "not a member library"),
        (["--library", "SC-510100\n"], "not a library code"),
        (["--library", "nowhere"], "not a library code"),
        ([], "exactly one of"),
        (["--admin", "--library", CHENGDU], "exactly one of"),
    ],
)
def test_a_key_needs_exactly_one_member_library_or_admin(  # type: ignore[no-untyped-def]
    run, dsn: str, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        main,
        ["keys", "create", *args],
        env={"LEDGER_DATABASE_URL": dsn, "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex()},
    )
    assert result.exit_code != 0
    assert message in result.output
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)

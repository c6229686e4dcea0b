"""``tongjie witness`` against the HTTP API over a real socket: it keeps checkpoints, checks
each new one with a consistency proof, confirms it, and fails loudly on a rewritten history."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from ledger import commands as c
from ledger.cli import main
from ledger.integrity.checkpoints import Checkpoint, private_key, sign_checkpoint
from ledger.integrity.service import Integrity, dsn_connect
from ledger.integrity.verify import verify_store
from ledger.keys import create_key
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, JINJIANG, desk, join_all
from tests.test_integrity_attacks import rehash, superuser
from web import create_app

KEY = private_key(bytes(range(32)))


@pytest.fixture
def served(dsn: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    ledger = open_ledger(dsn)
    join_all(ledger, [CHENGDU, JINJIANG])
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, library=JINJIANG, label="witness")
    server = make_server("127.0.0.1", 0, create_app(ledger), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "url": f"http://127.0.0.1:{server.server_port}",
        "ledger": ledger,
        "token": token,
        "integrity": Integrity(dsn_connect(dsn), KEY),
        "state": tmp_path / "witness" / "state.json",
    }
    server.shutdown()
    thread.join(timeout=10)
    ledger.close()


def record(served: dict[str, Any], prefix: str, count: int) -> None:
    for n in range(count):
        served["ledger"].execute(
            c.RegisterItem(owner=CHENGDU, barcode=f"{prefix}{n}", actor=desk(CHENGDU))
        )


def witness(served: dict[str, Any], *extra: str) -> Any:
    args = ["witness", "--url", served["url"], "--state", str(served["state"]), *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_witness_keeps_checks_and_confirms(served: dict[str, Any]) -> None:
    record(served, "A", 10)
    first, _ = served["integrity"].make_checkpoint()
    run = witness(
        served,
        "--api-key",
        served["token"],
        "--name",
        "锦江",
        "--expect-key",
        first.key_fingerprint,
    )
    assert run.exit_code == 0, run.output
    assert "first run" in run.output and first.key_fingerprint in run.output
    state = json.loads(served["state"].read_text())
    assert state["checkpoint"]["tree_size"] == first.tree_size

    record(served, "B", 25)
    second, _ = served["integrity"].make_checkpoint()
    run = witness(served, "--api-key", served["token"], "--name", "锦江")
    assert run.exit_code == 0, run.output
    assert f"extends checkpoint {first.tree_size}" in run.output
    assert json.loads(served["state"].read_text())["checkpoint"]["tree_size"] == second.tree_size
    confirmed = served["integrity"].confirmations(second.tree_size)
    assert [c.witness_name for c in confirmed] == ["锦江"]
    assert served["integrity"].confirmations(first.tree_size)

    again = witness(served)  # no new events, no key: checks, keeps, reports nothing
    assert again.exit_code == 0 and "unchanged" in again.output


def test_witness_raises_the_alarm_on_a_rewritten_history(served: dict[str, Any], dsn: str) -> None:
    record(served, "A", 20)
    kept, _ = served["integrity"].make_checkpoint()
    assert witness(served).exit_code == 0
    before = served["state"].read_text()

    # The operator edits an old event and covers the tracks, then signs the new tree.
    with superuser(dsn) as conn:
        conn.execute(
            "UPDATE circulation_events SET state = set_byte(state, 30, get_byte(state, 30) # 4)"
            " WHERE notification_id = (SELECT notification_id FROM event_chain"
            " WHERE leaf_index = 5)"
        )
        rehash(conn)
    record(served, "B", 5)
    integrity: Integrity = served["integrity"]
    size = integrity.tree_size()
    forged = sign_checkpoint(KEY, kept.ledger, size, integrity.root(size), datetime.now(UTC))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO checkpoints (tree_size, root_hash, signed_at, body, signature,"
            " key_fingerprint) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                size,
                forged.root_hash,
                forged.signed_at,
                forged.body,
                forged.signature,
                forged.key_fingerprint,
            ),
        )

    run = witness(served)
    assert run.exit_code == 2
    assert "LEDGER HISTORY MISMATCH" in run.output
    assert f"does not extend the kept checkpoint {kept.tree_size}" in run.output
    assert served["state"].read_text() == before  # the kept checkpoint was not replaced
    evidence = list(served["state"].parent.glob("state.json.evidence-*.json"))
    assert len(evidence) == 1
    kept_proof = json.loads(evidence[0].read_text())
    assert kept_proof["previous"]["tree_size"] == kept.tree_size
    assert kept_proof["latest"]["tree_size"] == size
    # and the checkpoint the witness kept makes `tongjie verify` name the rewrite too, even
    # with the ledger's own checkpoints deleted
    with superuser(dsn) as conn:
        conn.execute("DELETE FROM checkpoints")
    witnessed = Checkpoint.from_dict(json.loads(before))
    report = verify_store(dsn, external=[(witnessed, "witness's checkpoint")])
    assert report.mismatch is not None and report.mismatch.kind == "checkpoint"
    assert "witness's checkpoint" in report.mismatch.detail


def test_witness_refuses_a_different_key(served: dict[str, Any]) -> None:
    record(served, "A", 3)
    served["integrity"].make_checkpoint()
    assert witness(served).exit_code == 0
    record(served, "B", 3)
    impostor = Integrity(served["integrity"].connect, private_key(bytes(32)))
    impostor.make_checkpoint()
    run = witness(served)
    assert run.exit_code == 2
    assert "not the ledger key you trust" in run.output


def test_witness_says_when_it_cannot_reach_the_ledger(tmp_path: Path) -> None:
    args = ["witness", "--url", "http://127.0.0.1:9", "--state", str(tmp_path / "s.json")]
    run = CliRunner().invoke(main, args, catch_exceptions=False)
    assert run.exit_code == 1
    assert "cannot reach the ledger" in run.output
    assert not (tmp_path / "s.json").exists()

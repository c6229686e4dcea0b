"""Checkpoints, proofs and confirmations over HTTP and the CLI, and the offline check a
member library runs (``tongjie verify-proof``, no database)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger import commands as c
from ledger.application import Circulation
from ledger.cli import main
from ledger.integrity.checkpoints import (
    Checkpoint,
    cosign,
    fingerprint,
    private_key,
    public_bytes,
)
from ledger.integrity.proofs import (
    ConsistencyProof,
    InclusionProof,
    VerificationFailed,
    check_checkpoint,
    check_consistency,
    check_receipt,
)
from ledger.integrity.receipts import Receipt
from ledger.integrity.service import Integrity, dsn_connect
from ledger.keys import create_key
from ledger.store import migrate
from tests.conftest import open_ledger
from tests.helpers import CHENGDU, desk, join_all
from web import create_app

SEED = bytes(range(32))
KEY = private_key(SEED)


@pytest.fixture
def api(dsn: str) -> Iterator[dict[str, Any]]:
    ledger = open_ledger(dsn)
    join_all(ledger, [CHENGDU])
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, library=CHENGDU, label="test desk")
    app = create_app(ledger)
    yield {
        "client": app.test_client(),
        "ledger": ledger,
        "auth": {"Authorization": f"Bearer {token}"},
        "integrity": Integrity(dsn_connect(dsn), KEY),
    }
    ledger.close()


def register(api: dict[str, Any], barcode: str) -> dict[str, Any]:
    response = api["client"].post(
        "/api/v1/items", json={"owner": CHENGDU, "barcode": barcode}, headers=api["auth"]
    )
    assert response.status_code == 201, response.json
    return response.json


def problem(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == f"/problems/{code}"
    return response.json["detail"]


# -------------------------------------------------------------------------- HTTP


def test_command_responses_carry_a_receipt_that_proves_inclusion(api: dict[str, Any]) -> None:
    client: FlaskClient = api["client"]
    answer = register(api, "H1")
    receipt = Receipt.from_dict(answer)
    assert [e.position for e in receipt.events] == answer["positions"]
    for n in range(20):
        register(api, f"H{n + 2}")
    api["integrity"].make_checkpoint()

    latest = client.get("/api/v1/checkpoints/latest")  # public: no key
    assert latest.status_code == 200
    checkpoint = Checkpoint.from_dict(latest.json)
    check_checkpoint(checkpoint)
    assert latest.json["confirmations"] == 0
    assert client.get(f"/api/v1/checkpoints/{checkpoint.tree_size}").json == latest.json

    position = receipt.events[0].position
    response = client.get(f"/api/v1/proofs/inclusion?position={position}")
    assert response.status_code == 200
    proof = InclusionProof.from_dict(response.json)
    assert proof.tree_size == checkpoint.tree_size
    assert response.json["checkpoint"]["root_hash"] == checkpoint.root_hash.hex()
    entry = check_receipt(receipt, proof, checkpoint, trusted_key=public_bytes(KEY.public_key()))
    assert entry.position == position
    assert len(proof.path) <= checkpoint.tree_size.bit_length()  # logarithmic


def test_replayed_command_answers_the_same_receipt(api: dict[str, Any]) -> None:
    headers = {**api["auth"], "Idempotency-Key": "item-r1"}
    body = {"owner": CHENGDU, "barcode": "R1"}
    first = api["client"].post("/api/v1/items", json=body, headers=headers)
    again = api["client"].post("/api/v1/items", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json["receipt"] == again.json["receipt"]
    assert first.json["receipt"]["events"]


def test_consistency_proof_over_http(api: dict[str, Any]) -> None:
    client: FlaskClient = api["client"]
    for n in range(5):
        register(api, f"C{n}")
    old, _ = api["integrity"].make_checkpoint()
    for n in range(30):
        register(api, f"D{n}")
    new, _ = api["integrity"].make_checkpoint()
    response = client.get(f"/api/v1/proofs/consistency?from={old.tree_size}")
    assert response.status_code == 200
    assert (response.json["from"], response.json["to"]) == (old.tree_size, new.tree_size)
    check_consistency(ConsistencyProof.from_dict(response.json), old, new)


def test_bad_requests_get_specific_answers(api: dict[str, Any]) -> None:
    client: FlaskClient = api["client"]
    problem(client.get("/api/v1/checkpoints/latest"), 404, "no-checkpoint")
    answer = register(api, "E1")
    position = answer["positions"][-1]
    problem(client.get(f"/api/v1/proofs/inclusion?position={position}"), 404, "no-checkpoint")
    checkpoint, _ = api["integrity"].make_checkpoint()
    size = checkpoint.tree_size
    later = register(api, "E2")["positions"][-1]

    problem(client.get("/api/v1/checkpoints/0"), 422, "empty-tree")
    problem(client.get(f"/api/v1/checkpoints/{size + 50}"), 404, "beyond-tree-size")
    problem(client.get(f"/api/v1/checkpoints/{size - 1}"), 404, "unknown-checkpoint")
    inclusion = "/api/v1/proofs/inclusion?position="
    problem(client.get(f"{inclusion}{position}&tree_size=0"), 422, "empty-tree")
    detail = problem(
        client.get(f"{inclusion}{position}&tree_size={size + 9}"), 404, "beyond-tree-size"
    )
    assert str(size + 1) in detail  # names the current size
    problem(client.get(f"{inclusion}{later}"), 422, "not-in-tree")
    problem(client.get(f"{inclusion}{later + 1000}"), 404, "beyond-tree-size")
    problem(client.get("/api/v1/proofs/inclusion"), 400, "invalid-request-body")
    problem(client.get(f"{inclusion}abc"), 400, "invalid-request-body")
    problem(client.get(f"{inclusion}{2**70}"), 400, "invalid-request-body")  # past bigint
    problem(client.get(f"{inclusion}{position}&tree_size={2**64}"), 400, "invalid-request-body")
    problem(client.get(f"/api/v1/checkpoints/{2**70}"), 404, "beyond-tree-size")
    consistency = "/api/v1/proofs/consistency"
    problem(client.get(f"{consistency}?from=0"), 422, "empty-tree")
    problem(client.get(f"{consistency}?from={size + 1}&to={size}"), 422, "bad-proof-range")
    problem(client.get(f"{consistency}?from=1&to={size + 9}"), 404, "beyond-tree-size")
    for code in ("empty-tree", "beyond-tree-size", "unknown-checkpoint", "not-in-tree"):
        assert client.get(f"/problems/{code}").status_code == 200


def test_unknown_position_in_a_gap(api: dict[str, Any], dsn: str) -> None:
    register(api, "G1")
    with psycopg.connect(dsn) as conn:
        gap = conn.execute("SELECT nextval('circulation_events_notification_id_seq')").fetchone()[0]
    register(api, "G2")
    api["integrity"].make_checkpoint()
    response = api["client"].get(f"/api/v1/proofs/inclusion?position={gap}")
    problem(response, 404, "unknown-position")


def test_witness_confirmations(api: dict[str, Any]) -> None:
    client: FlaskClient = api["client"]
    register(api, "W1")
    checkpoint, _ = api["integrity"].make_checkpoint()
    witness = private_key(secrets.token_bytes(32))
    body = {
        "witness_key": base64.b64encode(public_bytes(witness.public_key())).decode(),
        "signature": base64.b64encode(cosign(witness, checkpoint)).decode(),
        "witness_name": "锦江区图书馆 witness",
    }
    url = f"/api/v1/checkpoints/{checkpoint.tree_size}/confirmations"
    problem(client.post(url, json=body), 401, "unauthenticated")
    first = client.post(url, json=body, headers=api["auth"])
    assert first.status_code == 201, first.json
    assert first.json["recorded_by"].startswith("key:")
    assert client.post(url, json=body, headers=api["auth"]).status_code == 200  # kept once
    listed = client.get(url)
    assert [c["witness_name"] for c in listed.json] == ["锦江区图书馆 witness"]
    assert client.get("/api/v1/checkpoints/latest").json["confirmations"] == 1

    forged = {**body, "signature": base64.b64encode(cosign(witness, _other(checkpoint))).decode()}
    problem(client.post(url, json=forged, headers=api["auth"]), 422, "bad-confirmation-signature")
    bad_key = {**body, "witness_key": "AAAA"}
    problem(client.post(url, json=bad_key, headers=api["auth"]), 422, "invalid-input")
    problem(
        client.post(
            f"/api/v1/checkpoints/{checkpoint.tree_size + 5}/confirmations",
            json=body,
            headers=api["auth"],
        ),
        404,
        "beyond-tree-size",
    )


def _other(checkpoint: Checkpoint) -> Checkpoint:
    from dataclasses import replace

    return replace(checkpoint, tree_size=checkpoint.tree_size + 1)


def test_signing_twice_without_new_events_keeps_one_checkpoint(api: dict[str, Any]) -> None:
    register(api, "T1")
    first, created = api["integrity"].make_checkpoint()
    again, created_again = api["integrity"].make_checkpoint()
    assert (created, created_again) == (True, False)
    assert again == first
    assert [c.tree_size for c in api["integrity"].checkpoints()] == [first.tree_size]


# ----------------------------------------------------------------- offline checks


def test_tampered_checkpoint_signature_is_refused(api: dict[str, Any]) -> None:
    register(api, "S1")
    checkpoint, _ = api["integrity"].make_checkpoint()
    data = checkpoint.as_dict()
    raw = bytearray(base64.b64decode(data["signature"]))
    raw[5] ^= 0x40
    tampered = Checkpoint.from_dict({**data, "signature": base64.b64encode(raw).decode()})
    with pytest.raises(VerificationFailed, match="does not verify"):
        check_checkpoint(tampered)
    bigger = checkpoint.tree_size + 1  # a body edited to claim more events, same signature
    edited = data["body"].replace(f"size {checkpoint.tree_size}", f"size {bigger}")
    with pytest.raises(VerificationFailed, match="does not verify"):
        check_checkpoint(Checkpoint.from_dict({**data, "body": edited, "tree_size": bigger}))
    other_key = private_key(bytes(32))
    with pytest.raises(VerificationFailed, match="not the ledger key you trust"):
        check_checkpoint(checkpoint, public_bytes(other_key.public_key()))


@pytest.fixture
def other_ledger_dsn(server_dsn: str) -> Iterator[str]:
    """A ledger migrated on its own (not copied from the test template): its own identity."""
    name = f"tongjie_other_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    migrate(dsn)
    yield dsn
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_a_receipt_from_another_ledger_is_recognised(
    api: dict[str, Any], other_ledger_dsn: str
) -> None:
    other: Circulation = open_ledger(other_ledger_dsn)
    try:
        join_all(other, [CHENGDU])
        foreign = other.execute(
            c.RegisterItem(owner=CHENGDU, barcode="F1", actor=desk(CHENGDU))
        ).receipt
    finally:
        other.close()
    answer = register(api, "F1")
    api["integrity"].make_checkpoint()
    ours = Receipt.from_dict(answer)
    assert foreign is not None and foreign.ledger != ours.ledger
    position = ours.events[0].position
    proof = api["integrity"].inclusion_proof(position)
    checkpoint = api["integrity"].latest_checkpoint()
    forged = Receipt(foreign.ledger, ours.events)
    with pytest.raises(VerificationFailed, match="another ledger"):
        check_receipt(forged, proof, checkpoint)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_verify_proof_runs_with_no_database(api: dict[str, Any], tmp_path: Path) -> None:
    answer = register(api, "V1")
    for n in range(9):
        register(api, f"V{n + 2}")
    old, _ = api["integrity"].make_checkpoint()
    for n in range(9):
        register(api, f"X{n}")
    new, _ = api["integrity"].make_checkpoint()
    position = answer["positions"][0]
    files = {
        "receipt": _write(tmp_path / "receipt.json", answer),
        "inclusion": _write(
            tmp_path / "inclusion.json", api["integrity"].inclusion_proof(position).as_dict()
        ),
        "consistency": _write(
            tmp_path / "consistency.json",
            api["integrity"].consistency_proof(old.tree_size).as_dict(),
        ),
        "old": _write(tmp_path / "old.json", old.as_dict()),
        "new": _write(tmp_path / "new.json", new.as_dict()),
    }
    # No database can be reached: a DSN nobody answers, and no data directory to start one.
    env = {
        "LEDGER_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
        "LEDGER_DATA_DIR": str(tmp_path / "no-data"),
    }
    runner = CliRunner()
    trusted = new.key_fingerprint

    def run(*args: str) -> Any:
        return runner.invoke(main, ["verify-proof", *args], env=env, catch_exceptions=False)

    ok = run(
        "--receipt",
        str(files["receipt"]),
        "--proof",
        str(files["inclusion"]),
        "--checkpoint",
        str(files["new"]),
        "--trusted-key",
        trusted,
    )
    assert ok.exit_code == 0, ok.output
    assert f"position {position}" in ok.output and "OK" in ok.output
    consistent = run(
        "--proof",
        str(files["consistency"]),
        "--old-checkpoint",
        str(files["old"]),
        "--checkpoint",
        str(files["new"]),
        "--trusted-key",
        trusted,
    )
    assert consistent.exit_code == 0, consistent.output

    tampered = new.as_dict()
    tampered["signature"] = base64.b64encode(bytes(64)).decode()
    bad = run(
        "--receipt",
        str(files["receipt"]),
        "--proof",
        str(files["inclusion"]),
        "--checkpoint",
        str(_write(tmp_path / "bad.json", tampered)),
    )
    assert bad.exit_code == 1
    assert "FAILED" in bad.output and "does not verify" in bad.output

    other_key = public_bytes(private_key(bytes(32)).public_key())
    wrong = run(
        "--receipt",
        str(files["receipt"]),
        "--proof",
        str(files["inclusion"]),
        "--checkpoint",
        str(files["new"]),
        "--trusted-key",
        fingerprint(other_key),
    )
    assert wrong.exit_code == 1 and "not the trusted" in wrong.output

    forged_proof = json.loads(files["inclusion"].read_text())
    forged_proof["path"][0] = "00" * 32
    forged = run(
        "--receipt",
        str(files["receipt"]),
        "--proof",
        str(_write(tmp_path / "forged.json", forged_proof)),
        "--checkpoint",
        str(files["new"]),
    )
    assert forged.exit_code == 1 and "inclusion proof fails" in forged.output

    swapped = run(
        "--proof",
        str(files["consistency"]),
        "--old-checkpoint",
        str(files["new"]),
        "--checkpoint",
        str(files["old"]),
    )
    assert swapped.exit_code == 1


def test_checkpoint_and_verify_commands(dsn: str, tmp_path: Path) -> None:
    ledger = open_ledger(dsn)
    try:
        join_all(ledger)
    finally:
        ledger.close()
    env = {
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_SIGNING_KEY": SEED.hex(),
        "LEDGER_DATA_DIR": str(tmp_path),
    }
    runner = CliRunner()
    made = runner.invoke(main, ["checkpoint", "--json"], env=env, catch_exceptions=False)
    assert made.exit_code == 0, made.output
    checkpoint = Checkpoint.from_dict(json.loads(made.output))
    check_checkpoint(checkpoint, public_bytes(KEY.public_key()))
    verified = runner.invoke(main, ["verify"], env=env, catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    assert f"checked {checkpoint.tree_size} events" in verified.output
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE circulation_events SET topic = topic || 'x'"
            " WHERE notification_id = (SELECT min(notification_id) + 2"
            " FROM circulation_events)"
        )
    broken = runner.invoke(main, ["verify"], env=env, catch_exceptions=False)
    assert broken.exit_code == 1
    assert "MISMATCH" in broken.output and "content" in broken.output


def test_the_cli_prints_the_receipt_of_what_it_records(dsn: str, tmp_path: Path) -> None:
    from tests.conftest import IDENTITY_KEY
    from tests.helpers import identity_number, register_reader

    ledger = open_ledger(dsn)
    try:
        join_all(ledger, [CHENGDU])
        register_reader(ledger, 11)
    finally:
        ledger.close()
    env = {
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex(),
        "LEDGER_DATA_DIR": str(tmp_path),
    }
    run = CliRunner().invoke(
        main,
        ["readers", "forget", "--number", identity_number(11)],
        env=env,
        catch_exceptions=False,
    )
    assert run.exit_code == 0, run.output
    printed = run.output[run.output.index("{") :]
    receipt = Receipt.from_dict(json.loads(printed))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT c.notification_id, c.leaf_index, c.leaf_hash FROM event_chain c"
            " JOIN circulation_events e USING (notification_id)"
            " WHERE e.topic LIKE '%Reader.Forgotten'"
        ).fetchone()
    assert [(e.position, e.leaf_index, e.leaf_hash) for e in receipt.events] == [
        (row[0], row[1], bytes(row[2]))
    ]

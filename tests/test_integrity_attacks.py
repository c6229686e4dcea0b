"""Attacks on history by the database superuser, bypassing the append-only triggers.

Each attack comes in two forms. *Naive*: the events are edited and the hash rows left
alone — ``verify`` names the first bad position, its item and what differs. *Covered*: the
attacker also recomputes the chain and the tree over the edited events, so the stored
hashes agree with each other — then ``verify`` catches it against the signed checkpoint,
the signer refuses to sign the forked tree, and a consistency proof from the checkpoint
taken before the attack fails (what a witness checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from ledger import commands as c
from ledger.application import Circulation
from ledger.cli import main
from ledger.integrity.checkpoints import Checkpoint, private_key, sign_checkpoint
from ledger.integrity.proofs import VerificationFailed, check_consistency
from ledger.integrity.service import Integrity, TreeForked, dsn_connect
from ledger.integrity.verify import verify_store
from tests.helpers import CHENGDU, desk, join_all, register_item, register_reader

SIGNING_KEY = private_key(bytes(range(32)))


@contextmanager
def superuser(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The test DSN's user is a superuser; replica mode skips the refuse-edit triggers."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def rehash(conn: psycopg.Connection[Any]) -> None:
    """Cover the tracks: rebuild every chain row and Merkle node from the edited events."""
    conn.execute("DELETE FROM merkle_nodes")
    conn.execute("DELETE FROM event_chain")
    conn.execute("SELECT chain_unchained_events()")


@pytest.fixture
def history(ledger: Circulation, dsn: str) -> dict[str, Any]:
    """About 60 events, a gap in the notification ids, a checkpoint signed over them."""
    join_all(ledger)
    reader = register_reader(ledger, 7)
    for n in range(8):
        register_item(ledger, CHENGDU, f"B{n}")
    with psycopg.connect(dsn) as conn:  # a rolled-back save leaves a gap
        gap = conn.execute("SELECT nextval('circulation_events_notification_id_seq')").fetchone()[0]
    for n in range(8):
        ledger.execute(
            c.Borrow(
                owner=CHENGDU,
                barcode=f"B{n}",
                library=CHENGDU,
                reader_id=reader,
                actor=desk(CHENGDU),
            )
        )
        ledger.execute(
            c.Return(owner=CHENGDU, barcode=f"B{n}", library=CHENGDU, actor=desk(CHENGDU))
        )
    integrity = Integrity(dsn_connect(dsn), SIGNING_KEY)
    checkpoint, _ = integrity.make_checkpoint()
    for n in range(8, 12):  # history goes on after the checkpoint
        register_item(ledger, CHENGDU, f"B{n}")
    with psycopg.connect(dsn) as conn:
        borrowed = conn.execute(
            "SELECT notification_id FROM circulation_events WHERE topic LIKE '%Item.Borrowed'"
            " ORDER BY notification_id"
        ).fetchall()
        last = conn.execute("SELECT max(notification_id) FROM circulation_events").fetchone()[0]
    return {
        "integrity": integrity,
        "checkpoint": checkpoint,
        "gap": gap,
        "target": borrowed[2][0],  # the borrow of B2: an old event inside the checkpoint
        "later": borrowed[5][0],
        "last": last,
    }


def flip_byte(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    conn.execute(
        "UPDATE circulation_events SET state = set_byte(state, 20, get_byte(state, 20) # 1)"
        " WHERE notification_id = %s",
        (h["target"],),
    )
    return h["target"]


def delete_event(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    conn.execute("DELETE FROM circulation_events WHERE notification_id = %s", (h["target"],))
    return h["target"]


def reorder(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    a, b = h["target"], h["later"]
    conn.execute(
        "UPDATE circulation_events SET notification_id = -1 WHERE notification_id = %s", (a,)
    )
    conn.execute(
        "UPDATE circulation_events SET notification_id = %s WHERE notification_id = %s", (a, b)
    )
    conn.execute(
        "UPDATE circulation_events SET notification_id = %s WHERE notification_id = -1", (b,)
    )
    return a


def backdate(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    conn.execute(
        "UPDATE circulation_events SET recorded_at = recorded_at - interval '3 days'"
        " WHERE notification_id = %s",
        (h["target"],),
    )
    return h["target"]


def forge_into_gap(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    """A forged event slipped into the past, at a notification id a rollback left unused."""
    conn.execute(
        "INSERT INTO circulation_events"
        " (originator_id, originator_version, topic, state, notification_id, recorded_at)"
        " SELECT originator_id, 99, topic, state, %s, recorded_at FROM circulation_events"
        " WHERE notification_id = %s",
        (h["gap"], h["target"]),
    )
    return h["gap"]


def forge_append(conn: psycopg.Connection[Any], h: dict[str, Any]) -> int:
    row = conn.execute(
        "INSERT INTO circulation_events (originator_id, originator_version, topic, state)"
        " SELECT originator_id, 98, topic, state FROM circulation_events"
        " WHERE notification_id = %s RETURNING notification_id",
        (h["target"],),
    ).fetchone()
    return row[0]


ATTACKS: dict[str, tuple[Callable[..., int], str, str]] = {
    # name: (attack, kind verify reports, words its detail must hold)
    "byte": (flip_byte, "content", "no longer hashes"),
    "delete": (delete_event, "missing-event", "deleted"),
    "reorder": (reorder, "content", "recorded at position"),
    "backdate": (backdate, "content", "recorded_at"),
    "forge-into-gap": (forge_into_gap, "unchained-event", "not recorded through the ledger"),
    "forge-append": (forge_append, "unchained-event", "not recorded through the ledger"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_verify_names_the_first_bad_position(history: dict[str, Any], dsn: str, name: str) -> None:
    attack, kind, words = ATTACKS[name]
    assert verify_store(dsn).ok
    with superuser(dsn) as conn:
        position = attack(conn, history)
    report = verify_store(dsn)
    assert report.mismatch is not None, name
    assert report.mismatch.kind == kind
    assert report.mismatch.position == position
    assert words in report.mismatch.detail
    if name != "delete":  # a deleted event leaves nothing to name it by
        # the content now at that position: B2's borrow (or a copy), or B5's after a swap
        item = "SC-510100/B5" if name == "reorder" else "SC-510100/B2"
        assert report.mismatch.item == f"item {item}"
    assert str(position) in report.mismatch.describe()


COVERED = ["byte", "delete", "reorder", "backdate", "forge-into-gap"]


@pytest.mark.parametrize("name", COVERED)
def test_covered_tracks_break_the_signed_checkpoint(
    history: dict[str, Any], dsn: str, name: str
) -> None:
    attack = ATTACKS[name][0]
    before: Checkpoint = history["checkpoint"]
    integrity: Integrity = history["integrity"]
    with superuser(dsn) as conn:
        attack(conn, history)
        rehash(conn)

    # verify: the stored hashes agree with each other now, but not with the signed root.
    report = verify_store(dsn)
    assert report.mismatch is not None
    assert report.mismatch.kind == "checkpoint"
    assert f"size {before.tree_size}" in report.mismatch.detail

    # the service's signer refuses to sign a tree that does not extend its last checkpoint,
    # and so does `tongjie checkpoint` (what `tongjie serve` runs), loudly.
    with pytest.raises(TreeForked):
        integrity.make_checkpoint()
    env = {"LEDGER_DATABASE_URL": dsn, "LEDGER_SIGNING_KEY": bytes(range(32)).hex()}
    refused = CliRunner().invoke(main, ["checkpoint"], env=env, catch_exceptions=False)
    assert refused.exit_code == 2
    assert "REFUSED TO SIGN" in refused.output

    # an operator who signs anyway is caught by the consistency proof a witness asks for.
    size = integrity.tree_size()
    forged = sign_checkpoint(
        SIGNING_KEY, before.ledger, size, integrity.root(size), datetime.now(UTC)
    )
    proof = integrity.consistency_proof(before.tree_size, size)
    with pytest.raises(VerificationFailed, match="consistency proof fails"):
        check_consistency(proof, before, forged)


def test_tampered_chain_row_is_named(history: dict[str, Any], dsn: str) -> None:
    with superuser(dsn) as conn:
        conn.execute(
            "UPDATE event_chain SET leaf_hash = sha256(leaf_hash) WHERE notification_id = %s",
            (history["target"],),
        )
    report = verify_store(dsn)
    assert report.mismatch is not None
    assert (report.mismatch.kind, report.mismatch.position) == ("chain", history["target"])


def test_tampered_merkle_node_is_named(history: dict[str, Any], dsn: str) -> None:
    with superuser(dsn) as conn:
        conn.execute("UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 4 AND idx = 1")
    report = verify_store(dsn)
    assert report.mismatch is not None
    assert report.mismatch.kind == "node"
    assert "level 4, index 1" in report.mismatch.detail


def test_a_removed_tail_is_caught_by_the_checkpoint(history: dict[str, Any], dsn: str) -> None:
    """Cutting the newest events (and their hash rows) leaves a self-consistent prefix;
    the signed checkpoint says more events existed."""
    size = history["checkpoint"].tree_size
    with superuser(dsn) as conn:
        conn.execute(
            "DELETE FROM circulation_events WHERE notification_id IN"
            " (SELECT notification_id FROM event_chain WHERE leaf_index >= %s)",
            (size - 3,),
        )
        conn.execute("DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > %s", (size - 3,))
        conn.execute("DELETE FROM event_chain WHERE leaf_index >= %s", (size - 3,))
    report = verify_store(dsn)
    assert report.mismatch is not None
    assert report.mismatch.kind == "checkpoint"
    assert "events were removed" in report.mismatch.detail


def test_a_tampered_checkpoint_signature_is_named(history: dict[str, Any], dsn: str) -> None:
    with superuser(dsn) as conn:
        conn.execute("UPDATE checkpoints SET signature = set_byte(signature, 0, 0)")
    report = verify_store(dsn)
    assert report.mismatch is not None
    assert report.mismatch.kind == "checkpoint"
    assert "does not verify" in report.mismatch.detail

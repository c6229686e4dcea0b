"""Checkpoints, proofs and witness confirmations over one database.

Every read here is O(log n) rows: a proof needs the tree size, one leaf, and the perfect
subtrees its ranges split into (``merkle.pieces``), fetched in one statement. The web
layer, the CLI and the checkpoint schedule all call this one class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.rows import tuple_row

from ledger.eventlog import head
from ledger.integrity import errors as e
from ledger.integrity import tables
from ledger.integrity.checkpoints import (
    BadSignature,
    Checkpoint,
    fingerprint,
    parse_body,
    public_bytes,
    sign_checkpoint,
    verify_cosignature,
)
from ledger.integrity.merkle import (
    InvalidProof,
    assemble,
    consistency_path,
    fold,
    frontier_pieces,
    inclusion_path,
    pieces_of,
    verify_consistency,
)
from ledger.integrity.proofs import ConsistencyProof, InclusionProof

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]

#: The signed body is the authority: a checkpoint is rebuilt from it, never from the columns
#: that repeat it for queries.
_CHECKPOINT_COLUMNS = (
    "SELECT c.body, c.signature, k.public_key"
    " FROM checkpoints c JOIN signing_keys k ON k.fingerprint = c.key_fingerprint"
)


class TreeForked(RuntimeError):
    """The stored tree no longer extends a signed checkpoint: history was rewritten."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    tree_size: int
    witness_fingerprint: str
    witness_key: bytes
    signature: bytes
    witness_name: str
    recorded_by: str
    confirmed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        import base64

        return {
            "tree_size": self.tree_size,
            "witness_fingerprint": self.witness_fingerprint,
            "witness_key": base64.b64encode(self.witness_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
            "witness_name": self.witness_name,
            "recorded_by": self.recorded_by,
            "confirmed_at": self.confirmed_at.isoformat(),
        }


def dsn_connect(dsn: str) -> Connect:
    @contextmanager
    def connect() -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield conn

    return connect


class Integrity:
    def __init__(self, connect: Connect, signing_key: Ed25519PrivateKey | None = None) -> None:
        self.connect = connect
        self.signing_key = signing_key
        self._ledger_id: str | None = None

    # ------------------------------------------------------------------ reads

    def ledger_id(self) -> str:
        if self._ledger_id is None:
            with self.connect() as conn:
                self._ledger_id = tables.ledger_id(conn)
        return self._ledger_id

    def tree_size(self) -> int:
        with self.connect() as conn:
            return tables.tree_size(conn)

    def root(self, size: int) -> bytes:
        with self.connect() as conn:
            return _root(conn, size)

    def latest_checkpoint(self) -> Checkpoint:
        with self.connect() as conn:
            checkpoint = _latest(conn)
        if checkpoint is None:
            raise e.NoCheckpoint("the ledger has signed no checkpoint yet", field="tree_size")
        return checkpoint

    def checkpoint(self, size: int) -> Checkpoint:
        if size < 1:
            raise e.EmptyTree("a checkpoint covers at least one event", field="tree_size")
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(_CHECKPOINT_COLUMNS + " WHERE c.tree_size = %s", (size,)).fetchone()
            if row is None:
                current = tables.tree_size(conn)
                if size > current:
                    raise e.BeyondTreeSize(
                        f"the ledger holds {current} events; no checkpoint can cover {size}",
                        field="tree_size",
                    )
                raise e.UnknownCheckpoint(
                    f"no checkpoint was signed at tree size {size}"
                    " (GET /api/v1/checkpoints/latest gives the newest)",
                    field="tree_size",
                )
        return _checkpoint(row)

    def checkpoints(self) -> list[Checkpoint]:
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(_CHECKPOINT_COLUMNS + " ORDER BY c.tree_size").fetchall()
        return [_checkpoint(row) for row in rows]

    def inclusion_proof(self, position: int, tree_size: int | None = None) -> InclusionProof:
        """The audit path of the event at ``position`` (notification id) in a tree of
        ``tree_size`` events (default: the latest checkpoint's)."""
        return self.inclusion(position, tree_size)[0]

    def inclusion(
        self, position: int, tree_size: int | None = None
    ) -> tuple[InclusionProof, Checkpoint | None]:
        """The proof, and the checkpoint signed at its tree size if there is one: two
        statements in all (the leaf with the checkpoint, then the subtrees)."""
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(
                "SELECT c.leaf_index, c.leaf_hash, (SELECT max(leaf_index) + 1 FROM event_chain),"
                " k.tree_size, k.body, k.signature, s.public_key"
                " FROM event_chain c"
                " LEFT JOIN checkpoints k ON k.tree_size = coalesce(%(size)s::bigint,"
                "     (SELECT max(tree_size) FROM checkpoints))"
                " LEFT JOIN signing_keys s ON s.fingerprint = k.key_fingerprint"
                " WHERE c.notification_id = %(position)s",
                {"position": position, "size": tree_size},
                prepare=True,
            ).fetchone()
            if row is None:
                current = tables.tree_size(conn)
                top = head(conn)  # 0: no event yet
                if top == 0 or position > top:
                    raise e.BeyondTreeSize(
                        f"no event has position {position} yet (the ledger holds {current} events)",
                        field="position",
                    )
                raise e.UnknownPosition(
                    f"no stored event has position {position} (positions may have gaps)",
                    field="position",
                )
            leaf_index, leaf, current, signed_size = row[0], bytes(row[1]), row[2], row[3]
            checkpoint = _checkpoint(row[4:]) if signed_size is not None else None
            latest = signed_size if tree_size is None else -1
            size = self._size_or_latest(conn, tree_size, current, latest=latest)
            if leaf_index >= size:
                raise e.NotInTree(
                    f"position {position} is leaf {leaf_index}, recorded after the tree of"
                    f" {size} events: ask against a later checkpoint",
                    field="tree_size",
                )
            ranges = inclusion_path(leaf_index, size)
            found = tables.perfect_hashes(conn, pieces_of([*ranges, (0, size)]))
        proof = InclusionProof(
            self.ledger_id(),
            position,
            leaf_index,
            leaf,
            size,
            fold([found[p] for p in frontier_pieces(size)]),
            tuple(assemble(ranges, found.__getitem__)),
        )
        return proof, checkpoint

    def consistency_proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        """That the tree of ``new`` events (default: the latest checkpoint's) extends the
        tree of ``old`` events."""
        if old < 1:
            raise e.EmptyTree("a consistency proof starts from at least one event", field="from")
        with self.connect() as conn:
            current = tables.tree_size(conn)
            size = self._size_or_latest(conn, new, current, field="to")
            if old > size:
                raise e.BadProofRange(
                    f"from={old} is past to={size}: a proof runs from the earlier tree",
                    field="from",
                )
            ranges = consistency_path(old, size)
            found = tables.perfect_hashes(conn, pieces_of([*ranges, (0, old), (0, size)]))
        return ConsistencyProof(
            self.ledger_id(),
            old,
            size,
            fold([found[p] for p in frontier_pieces(old)]),
            fold([found[p] for p in frontier_pieces(size)]),
            tuple(assemble(ranges, found.__getitem__)),
        )

    def confirmations(self, size: int) -> list[Confirmation]:
        self.checkpoint(size)  # unknown sizes get their specific answer
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(
                "SELECT tree_size, witness_fingerprint, witness_key, signature, witness_name,"
                " recorded_by, confirmed_at FROM witness_confirmations WHERE tree_size = %s"
                " ORDER BY confirmed_at",
                (size,),
            ).fetchall()
        return [Confirmation(r[0], r[1], bytes(r[2]), bytes(r[3]), *r[4:]) for r in rows]

    # ----------------------------------------------------------------- writes

    def make_checkpoint(self, now: datetime | None = None) -> tuple[Checkpoint, bool]:
        """Sign the current tree; return the checkpoint and whether it is new.

        Before signing, the stored tree must extend the last checkpoint (a consistency
        proof from the stored nodes): the signer never signs a forked history.
        """
        if self.signing_key is None:
            raise e.SigningKeyMissing("this process has no signing key (LEDGER_SIGNING_KEY)")
        with self.connect() as conn:
            size = tables.tree_size(conn)
            if size == 0:
                raise e.EmptyTree("the ledger holds no events yet: nothing to sign")
            existing = _latest(conn)
            if existing is not None and existing.tree_size == size:
                return existing, False
            root = _root(conn, size)
            if existing is not None:
                self._check_extends(conn, existing, size, root)
            public = public_bytes(self.signing_key.public_key())
            checkpoint = sign_checkpoint(
                self.signing_key, tables.ledger_id(conn), size, root, now or datetime.now(UTC)
            )
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO signing_keys (fingerprint, public_key) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (fingerprint(public), public),
                )
                cur.execute(
                    "INSERT INTO checkpoints"
                    " (tree_size, root_hash, signed_at, body, signature, key_fingerprint)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tree_size) DO NOTHING",
                    (
                        size,
                        root,
                        checkpoint.signed_at,
                        checkpoint.body,
                        checkpoint.signature,
                        checkpoint.key_fingerprint,
                    ),
                )
                created = cur.rowcount == 1
        return (checkpoint, True) if created else (self.checkpoint(size), False)

    def confirm(
        self,
        size: int,
        *,
        witness_key: bytes,
        signature: bytes,
        witness_name: str,
        recorded_by: str,
    ) -> tuple[Confirmation, bool]:
        """Keep a witness's signature over a checkpoint, once it verifies."""
        checkpoint = self.checkpoint(size)
        try:
            verify_cosignature(witness_key, signature, checkpoint)
        except (BadSignature, ValueError) as error:
            raise e.BadConfirmationSignature(str(error), field="signature") from None
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO witness_confirmations (tree_size, witness_fingerprint, witness_key,"
                " signature, witness_name, recorded_by) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (size, fingerprint(witness_key), witness_key, signature, witness_name, recorded_by),
            )
            created = cur.rowcount == 1
        mine = [c for c in self.confirmations(size) if c.witness_key == witness_key]
        return mine[0], created

    # ---------------------------------------------------------------- helpers

    def _size_or_latest(
        self,
        conn: psycopg.Connection[Any],
        size: int | None,
        current: int,
        field: str = "tree_size",
        latest: int | None = -1,
    ) -> int:
        """The size asked for, checked; or the latest checkpoint's (-1: not looked up yet)."""
        if size is None:
            if latest == -1:
                found = _latest(conn)
                latest = found.tree_size if found is not None else None
            if latest is None:
                raise e.NoCheckpoint(
                    f"no checkpoint yet: name {field} explicitly (1 to {current})", field=field
                )
            return latest
        if size < 1:
            raise e.EmptyTree("a tree of size 0 holds no events", field=field)
        if size > current:
            raise e.BeyondTreeSize(
                f"{field}={size} is past the current tree size {current}", field=field
            )
        return size

    def _check_extends(
        self, conn: psycopg.Connection[Any], old: Checkpoint, size: int, root: bytes
    ) -> None:
        ranges = consistency_path(old.tree_size, size)
        found = tables.perfect_hashes(conn, pieces_of(ranges))
        try:
            verify_consistency(
                old.tree_size, size, old.root_hash, root, assemble(ranges, found.__getitem__)
            )
        except InvalidProof as error:
            raise TreeForked(
                f"the stored tree does not extend checkpoint {old.tree_size} ({error}); "
                "refusing to sign: run `tongjie verify`"
            ) from None


def _root(conn: psycopg.Connection[Any], size: int) -> bytes:
    wanted = frontier_pieces(size)
    found = tables.perfect_hashes(conn, wanted)
    return fold([found[p] for p in wanted])


def _latest(conn: psycopg.Connection[Any]) -> Checkpoint | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(_CHECKPOINT_COLUMNS + " ORDER BY c.tree_size DESC LIMIT 1").fetchone()
        if row is None:
            return None
    return _checkpoint(row)


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    body, signature, public_key = row
    fields = parse_body(body)
    return Checkpoint(
        fields["ledger"],
        fields["size"],
        fields["root"],
        fields["time"],
        bytes(public_key),
        bytes(signature),
    )

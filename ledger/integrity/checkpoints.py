"""Signed checkpoints (tree size, root hash, time) and witness cosignatures: Ed25519 via
``cryptography``. Pure: a member library checks these with no database.

The signed body is UTF-8 text, one field per line, each line ending in a newline:

    tongjie checkpoint v1
    ledger <ledger id (UUID)>
    size <tree size, decimal>
    root <root hash, 64 lowercase hex digits>
    time <signing time, UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ>

A witness signs ``tongjie witness v1\\n`` followed by the same body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.integrity.receipts import MalformedDocument, hex_hash

HEADER = "tongjie checkpoint v1"
WITNESS_HEADER = b"tongjie witness v1\n"
FORMAT = "tongjie-checkpoint/1"
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class BadSignature(ValueError):
    """A signature does not verify with the key it names."""


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(public_key: bytes) -> str:
    """Names a key: hex SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(public_key).hexdigest()


def private_key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise MalformedDocument(f"not an Ed25519 public key: {error}") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    ledger: str
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    public_key: bytes  # raw Ed25519, 32 bytes
    signature: bytes

    @property
    def key_fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def body(self) -> str:
        return checkpoint_body(self.ledger, self.tree_size, self.root_hash, self.signed_at)

    def verify_signature(self) -> None:
        """Raises ``BadSignature`` unless the body verifies under ``public_key``."""
        try:
            load_public_key(self.public_key).verify(self.signature, self.body.encode())
        except InvalidSignature:
            raise BadSignature(
                f"the signature of checkpoint {self.tree_size} does not verify with key "
                f"{self.key_fingerprint[:16]}…: the checkpoint was altered or not signed by it"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "ledger": self.ledger,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "signed_at": self.signed_at.strftime(_TIME),
            "body": self.body,
            "signature": base64.b64encode(self.signature).decode(),
            "public_key": base64.b64encode(self.public_key).decode(),
            "key_fingerprint": self.key_fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Parse a published checkpoint; the signed ``body`` is the authority, and the
        other fields must say the same (so an edited field cannot hide behind a good body)."""
        if "checkpoint" in data and isinstance(data["checkpoint"], Mapping):
            data = data["checkpoint"]
        if data.get("format") != FORMAT:
            raise MalformedDocument(f"not a checkpoint: expected format {FORMAT!r}")
        try:
            parsed = parse_body(str(data["body"]))
            checkpoint = cls(
                ledger=parsed["ledger"],
                tree_size=parsed["size"],
                root_hash=parsed["root"],
                signed_at=parsed["time"],
                public_key=b64(data["public_key"], 32),
                signature=b64(data["signature"], 64),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedDocument(f"malformed checkpoint: {error}") from None
        for name, value in (
            ("ledger", checkpoint.ledger),
            ("tree_size", checkpoint.tree_size),
            ("root_hash", checkpoint.root_hash.hex()),
        ):
            if name in data and data[name] != value:
                raise MalformedDocument(
                    f"the checkpoint's {name} ({data[name]!r}) is not what its signed body"
                    f" says ({value!r})"
                )
        return checkpoint


def checkpoint_body(ledger: str, tree_size: int, root_hash: bytes, signed_at: datetime) -> str:
    return (
        f"{HEADER}\nledger {ledger}\nsize {tree_size}\nroot {root_hash.hex()}\n"
        f"time {signed_at.astimezone(UTC).strftime(_TIME)}\n"
    )


def parse_body(body: str) -> dict[str, Any]:
    lines = body.split("\n")
    if len(lines) != 6 or lines[-1] != "" or lines[0] != HEADER:
        raise ValueError(f"the body is not a {HEADER!r} text of five lines")
    fields = {}
    for line, name in zip(lines[1:5], ("ledger", "size", "root", "time"), strict=True):
        key, _, value = line.partition(" ")
        if key != name:
            raise ValueError(f"expected the line {name!r}, found {key!r}")
        fields[name] = value
    size = int(fields["size"])
    if size < 1 or str(size) != fields["size"]:
        raise ValueError("size must be a positive decimal")
    parsed = {
        "ledger": fields["ledger"],
        "size": size,
        "root": hex_hash(fields["root"]),
        "time": datetime.strptime(fields["time"], _TIME).replace(tzinfo=UTC),
    }
    if checkpoint_body(parsed["ledger"], size, parsed["root"], parsed["time"]) != body:
        raise ValueError("the body is not in its canonical form")
    return parsed


def b64(value: Any, length: int) -> bytes:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes, got {len(raw)}")
    return raw


def sign_checkpoint(
    key: Ed25519PrivateKey, ledger: str, tree_size: int, root_hash: bytes, signed_at: datetime
) -> Checkpoint:
    signed_at = signed_at.astimezone(UTC)
    body = checkpoint_body(ledger, tree_size, root_hash, signed_at)
    return Checkpoint(
        ledger,
        tree_size,
        root_hash,
        signed_at,
        public_bytes(key.public_key()),
        key.sign(body.encode()),
    )


def witness_message(checkpoint: Checkpoint) -> bytes:
    return WITNESS_HEADER + checkpoint.body.encode()


def cosign(key: Ed25519PrivateKey, checkpoint: Checkpoint) -> bytes:
    return key.sign(witness_message(checkpoint))


def verify_cosignature(witness_key: bytes, signature: bytes, checkpoint: Checkpoint) -> None:
    try:
        load_public_key(witness_key).verify(signature, witness_message(checkpoint))
    except InvalidSignature:
        raise BadSignature(
            f"the witness signature does not verify for checkpoint {checkpoint.tree_size}"
            f" with witness key {fingerprint(witness_key)[:16]}…"
        ) from None

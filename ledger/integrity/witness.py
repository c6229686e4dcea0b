"""The member library's side of witnessing: keep the ledger's checkpoints, and refuse any
that does not extend the last one kept.

A run fetches the latest signed checkpoint, checks its signature with the key pinned at
the first run, fetches a consistency proof from the checkpoint kept last time and checks
it (RFC 9162, no trust in the server's own roots), then keeps the new checkpoint and
reports a confirmation signed with the witness's own Ed25519 key. Any mismatch raises
``WitnessAlarm`` and the evidence (both checkpoints and the proof) is written beside the
state file, so the library can take it to the consortium.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from ledger.integrity.checkpoints import (
    Checkpoint,
    cosign,
    fingerprint,
    private_key,
    public_bytes,
)
from ledger.integrity.proofs import (
    ConsistencyProof,
    VerificationFailed,
    check_checkpoint,
    check_consistency,
)
from ledger.integrity.receipts import MalformedDocument
from ledger.keyfile import KeyFileError, hex_key

STATE_FORMAT = "tongjie-witness-state/1"
#: Seconds to wait for the ledger: a witness runs from cron, it must not hang forever.
TIMEOUT = 30
#: Checkpoints remembered in the state file besides the latest (size, root, time each).
HISTORY = 1_000


class WitnessAlarm(Exception):
    """The ledger showed this witness something that contradicts what it kept."""

    def __init__(self, message: str, evidence: Path | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class WitnessError(Exception):
    """The witness could not check anything (network, a malformed answer): retry later."""


@dataclass
class Outcome:
    checkpoint: Checkpoint
    previous: Checkpoint | None
    first_run: bool
    confirmed: bool | None  # None: no API key, nothing reported
    message: str


def run(
    url: str,
    state_path: Path,
    *,
    api_key: str | None = None,
    name: str = "",
    key_path: Path | None = None,
    expect_key: str | None = None,
    session: requests.Session | None = None,
) -> Outcome:
    http = session or requests.Session()
    base = url.rstrip("/")
    state = _load_state(state_path)
    answer = _get(http, f"{base}/api/v1/checkpoints/latest")
    try:
        latest = Checkpoint.from_dict(answer)
    except MalformedDocument as error:
        raise WitnessAlarm(
            f"the ledger published a malformed checkpoint: {error}",
            _evidence(state_path, published=answer),
        ) from None

    pinned = base64.b64decode(state["public_key"]) if state else None
    if pinned is None and expect_key and latest.key_fingerprint != expect_key.lower():
        raise WitnessAlarm(
            f"the ledger signs with key {latest.key_fingerprint}, not the expected {expect_key}"
        )
    try:
        check_checkpoint(latest, pinned)
    except VerificationFailed as error:
        raise WitnessAlarm(str(error), _evidence(state_path, latest=latest)) from None

    previous = Checkpoint.from_dict(state["checkpoint"]) if state else None
    if previous is not None:
        _check_extends(http, base, state_path, previous, latest, pinned)

    history = list(state.get("history", [])) if state else []
    if previous is None or previous.tree_size != latest.tree_size:
        history.append(
            {
                "tree_size": latest.tree_size,
                "root_hash": latest.root_hash.hex(),
                "signed_at": latest.as_dict()["signed_at"],
            }
        )
    _save_state(
        state_path,
        {
            "format": STATE_FORMAT,
            "url": base,
            "ledger": latest.ledger,
            "public_key": base64.b64encode(latest.public_key).decode(),
            "key_fingerprint": latest.key_fingerprint,
            "checkpoint": latest.as_dict(),
            "checked_at": datetime.now(UTC).isoformat(),
            "history": history[-HISTORY:],
        },
    )

    confirmed = None
    if api_key:
        seed = _witness_seed(key_path or state_path.with_name(state_path.name + ".key"))
        key = private_key(seed)
        response = http.post(
            f"{base}/api/v1/checkpoints/{latest.tree_size}/confirmations",
            json={
                "witness_key": base64.b64encode(public_bytes(key.public_key())).decode(),
                "signature": base64.b64encode(cosign(key, latest)).decode(),
                "witness_name": name,
            },
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=TIMEOUT,
        )
        if response.status_code not in (200, 201):
            raise WitnessError(
                f"the ledger refused the confirmation ({response.status_code}): {response.text}"
            )
        confirmed = True

    if previous is None:
        message = (
            f"first run: kept checkpoint {latest.tree_size} of ledger {latest.ledger}; pinned key"
            f" {latest.key_fingerprint} — compare it with the consortium's published key"
        )
    elif previous.tree_size == latest.tree_size:
        message = f"no new events: checkpoint {latest.tree_size} unchanged"
    else:
        message = (
            f"checkpoint {latest.tree_size} extends checkpoint {previous.tree_size}"
            " (consistency proof verified)"
        )
    return Outcome(latest, previous, previous is None, confirmed, message)


def _check_extends(
    http: requests.Session,
    base: str,
    state_path: Path,
    previous: Checkpoint,
    latest: Checkpoint,
    pinned: bytes | None,
) -> None:
    if latest.ledger != previous.ledger:
        raise WitnessAlarm(
            f"the ledger now calls itself {latest.ledger}, it was {previous.ledger}",
            _evidence(state_path, previous=previous, latest=latest),
        )
    if latest.tree_size < previous.tree_size:
        raise WitnessAlarm(
            f"the ledger's latest checkpoint has {latest.tree_size} events; this witness kept"
            f" one with {previous.tree_size}: history was cut",
            _evidence(state_path, previous=previous, latest=latest),
        )
    if latest.tree_size == previous.tree_size:
        if latest.root_hash != previous.root_hash:
            raise WitnessAlarm(
                f"two different roots signed for tree size {latest.tree_size}: history was"
                " rewritten",
                _evidence(state_path, previous=previous, latest=latest),
            )
        return
    answer = _get(
        http,
        f"{base}/api/v1/proofs/consistency",
        params={"from": previous.tree_size, "to": latest.tree_size},
    )
    try:
        proof = ConsistencyProof.from_dict(answer)
        check_consistency(proof, previous, latest, trusted_key=pinned)
    except (VerificationFailed, MalformedDocument) as error:
        raise WitnessAlarm(
            f"checkpoint {latest.tree_size} does not extend the kept checkpoint"
            f" {previous.tree_size}: {error}",
            _evidence(state_path, previous=previous, latest=latest, proof=answer),
        ) from None


def _get(http: requests.Session, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = http.get(url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as error:
        raise WitnessError(f"cannot reach the ledger at {url}: {error}") from None
    if response.status_code != 200:
        raise WitnessError(f"{url} answered {response.status_code}: {response.text[:500]}")
    try:
        body = response.json()
    except ValueError:
        raise WitnessError(f"{url} did not answer JSON") from None
    if not isinstance(body, dict):
        raise WitnessError(f"{url} did not answer a JSON object")
    return body


def _load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError as error:
        raise WitnessError(f"the state file {path} is not JSON ({error}); restore it") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise WitnessError(f"{path} is not a witness state file ({STATE_FORMAT})")
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write-then-rename: a crash leaves the old state or the new one, never half of each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _witness_seed(path: Path) -> bytes:
    try:
        seed = hex_key(None, path, "witness")
    except KeyFileError as error:  # said as the witness's own refusal, not a traceback
        raise WitnessError(str(error)) from None
    if len(seed) != 32:
        raise WitnessError(f"{path} does not hold a 32-byte hex Ed25519 seed")
    return seed


def witness_fingerprint(key_path: Path) -> str:
    return fingerprint(public_bytes(private_key(_witness_seed(key_path)).public_key()))


def _evidence(state_path: Path, **documents: Any) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = state_path.with_name(f"{state_path.name}.evidence-{stamp}.json")
    out = {
        name: (doc.as_dict() if hasattr(doc, "as_dict") else doc) for name, doc in documents.items()
    }
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return path

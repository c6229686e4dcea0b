"""Tamper evidence: verify the store, sign checkpoints, witness them, check proofs offline."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from ledger.cli.base import main
from ledger.config import Settings

log = logging.getLogger(__name__)


def echo_receipt(result: Any) -> None:
    """Print a command's receipt for the library to keep (CLI commands that record)."""
    receipt = getattr(result, "receipt", None)
    if receipt is not None:
        click.echo("receipt (keep it: `tongjie verify-proof` checks it):")
        click.echo(json.dumps(receipt.as_dict(), indent=2))


def _integrity(settings: Settings, *, signing: bool = False) -> tuple[str, Any]:
    from ledger.integrity.checkpoints import private_key
    from ledger.integrity.service import Integrity, dsn_connect
    from ledger.store import migrate, resolve_dsn, signing_key_seed

    dsn = resolve_dsn(settings)
    migrate(dsn)
    key = private_key(signing_key_seed(settings)) if signing else None
    return dsn, Integrity(dsn_connect(dsn), key)


@main.command()
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint kept outside the database (a witness's state file or a checkpoint"
    " JSON) to compare as well. Repeatable.",
)
@click.pass_obj
def verify(settings: Settings, checkpoint_files: tuple[Path, ...]) -> None:
    """Recompute the hash chain and the Merkle tree over the whole store.

    Reports the first event that does not match (position, item, what differs) and exits
    with status 1; every signed checkpoint is checked against the recomputed tree.
    """
    from ledger.integrity.checkpoints import Checkpoint
    from ledger.integrity.receipts import MalformedDocument
    from ledger.integrity.verify import verify_store
    from ledger.progress import bar

    dsn, service = _integrity(settings)
    external = []
    for path in checkpoint_files:
        try:
            external.append((Checkpoint.from_dict(_read_json(path)), f"checkpoint in {path}"))
        except MalformedDocument as error:
            raise click.ClickException(f"{path}: {error}") from None
    with bar(service.tree_size(), "verify", unit="ev") as progress:
        report = verify_store(dsn, external=external, progress=progress.update)
    rate = report.events / report.seconds if report.seconds else 0.0
    click.echo(
        f"checked {report.events} events, {report.nodes} stored Merkle nodes and"
        f" {report.checkpoints} checkpoints in {report.seconds:.1f}s ({rate:,.0f} events/s)"
    )
    if report.mismatch is not None:
        click.secho(f"MISMATCH — {report.mismatch.describe()}", fg="red", bold=True, err=True)
        sys.exit(1)
    if report.root is not None:
        click.echo(f"ok: tree of {report.events} events, root {report.root.hex()}")
    else:
        click.echo("ok: the ledger holds no events")


@main.command()
@click.option(
    "--every",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Keep signing one every SECONDS (what `tongjie serve` runs) instead of once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
@click.pass_obj
def checkpoint(settings: Settings, every: float | None, as_json: bool) -> None:
    """Sign a checkpoint of the current tree (tree size, root hash, time) and keep it."""
    from ledger.integrity.errors import EmptyTree
    from ledger.integrity.service import TreeForked

    _, service = _integrity(settings, signing=True)
    while True:
        try:
            made, created = service.make_checkpoint()
        except TreeForked as error:  # never sign a rewritten history; say so and stop
            click.secho(f"REFUSED TO SIGN: {error}", fg="red", bold=True, err=True)
            sys.exit(2)
        except EmptyTree as error:
            if every is None:
                raise click.ClickException(error.message) from None
            log.info("no checkpoint: %s", error.message)
        else:
            if as_json:
                click.echo(json.dumps(made.as_dict(), indent=2))
            elif created or every is None:
                state = "signed" if created else "unchanged (no new events since)"
                click.echo(
                    f"checkpoint {made.tree_size} {state}: root {made.root_hash.hex()},"
                    f" key {made.key_fingerprint[:16]}…"
                )
        if every is None:
            return
        time.sleep(max(every, 1.0))


@main.command()
@click.option("--url", required=True, help="The ledger's base URL, e.g. https://ledger.example")
@click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where this witness keeps the last checkpoint it confirmed (created at the first run).",
)
@click.option(
    "--api-key",
    envvar="TONGJIE_API_KEY",
    help="Report the confirmation with this API key [env TONGJIE_API_KEY]; without one the"
    " witness only checks and keeps.",
)
@click.option("--name", default="", help="This witness's name, shown with its confirmations.")
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The witness's own Ed25519 seed (hex); default STATE.key, generated once.",
)
@click.option(
    "--expect-key",
    metavar="FINGERPRINT",
    help="The ledger key fingerprint to accept at the first run (published by the consortium).",
)
def witness(
    url: str,
    state_path: Path,
    api_key: str | None,
    name: str,
    key_path: Path | None,
    expect_key: str | None,
) -> None:
    """Check the ledger's latest checkpoint against the one kept last time, keep it, confirm it.

    Exit status: 0 checked, 2 MISMATCH (evidence written beside the state file), 1 could not
    check (network, a malformed answer).
    """
    from ledger.integrity.witness import WitnessAlarm, WitnessError, run

    try:
        outcome = run(
            url,
            state_path,
            api_key=api_key,
            name=name,
            key_path=key_path,
            expect_key=expect_key,
        )
    except WitnessAlarm as alarm:
        banner = "!" * 78
        click.secho(banner, fg="red", bold=True, err=True)
        click.secho(f"LEDGER HISTORY MISMATCH: {alarm}", fg="red", bold=True, err=True)
        if alarm.evidence is not None:
            click.secho(f"evidence kept in {alarm.evidence}", fg="red", err=True)
        click.secho("the kept checkpoint was NOT replaced; tell the consortium", fg="red", err=True)
        click.secho(banner, fg="red", bold=True, err=True)
        sys.exit(2)
    except WitnessError as error:
        raise click.ClickException(str(error)) from None
    click.echo(outcome.message)
    if outcome.confirmed:
        click.echo(f"confirmation of checkpoint {outcome.checkpoint.tree_size} reported")


@main.command("verify-proof")
@click.option(
    "--proof",
    "proof_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An inclusion or consistency proof (JSON from /api/v1/proofs/…).",
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The signed checkpoint the proof is against (for consistency: the later one).",
)
@click.option(
    "--receipt",
    "receipt_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="For an inclusion proof: the receipt (or the whole command response) you kept.",
)
@click.option(
    "--old-checkpoint",
    "old_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="For a consistency proof: the earlier signed checkpoint you kept.",
)
@click.option(
    "--trusted-key",
    metavar="FINGERPRINT",
    help="The ledger key's fingerprint you trust (else: the key a witness state file pinned,"
    " given with --witness-state, else the checkpoint's own key, with a warning).",
)
@click.option(
    "--witness-state",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A witness state file: its pinned key is the trusted one.",
)
def verify_proof(
    proof_file: Path,
    checkpoint_file: Path,
    receipt_file: Path | None,
    old_file: Path | None,
    trusted_key: str | None,
    witness_state: Path | None,
) -> None:
    """Check a receipt, a proof and a signed checkpoint on this machine, with no database."""
    import base64

    from ledger.integrity.checkpoints import Checkpoint
    from ledger.integrity.proofs import (
        CONSISTENCY,
        INCLUSION,
        ConsistencyProof,
        InclusionProof,
        VerificationFailed,
        check_consistency,
        check_receipt,
    )
    from ledger.integrity.receipts import MalformedDocument, Receipt

    try:
        proof_data = _read_json(proof_file)
        new = Checkpoint.from_dict(_read_json(checkpoint_file))
        pinned: bytes | None = None
        if witness_state is not None:
            state = _read_json(witness_state)
            if "public_key" not in state:
                raise MalformedDocument(f"{witness_state} is not a witness state file")
            pinned = base64.b64decode(state["public_key"])
        if trusted_key is not None and new.key_fingerprint != trusted_key.lower():
            raise VerificationFailed(
                f"the checkpoint is signed with key {new.key_fingerprint}, not the trusted"
                f" {trusted_key}"
            )
        if pinned is None and trusted_key is None:
            click.secho(
                f"warning: trusting the checkpoint's own key {new.key_fingerprint}; compare it"
                " with the consortium's published fingerprint (or pass --trusted-key)",
                fg="yellow",
                err=True,
            )
        kind = proof_data.get("format")
        if kind == INCLUSION:
            if receipt_file is None:
                raise click.UsageError("an inclusion proof is checked against --receipt FILE")
            receipt = Receipt.from_dict(_read_json(receipt_file))
            entry = check_receipt(
                receipt, InclusionProof.from_dict(proof_data), new, trusted_key=pinned
            )
            click.secho(
                f"OK: the event at position {entry.position} (leaf {entry.leaf_index}) is in"
                f" the history of {new.tree_size} events that ledger {new.ledger} signed"
                f" at {new.as_dict()['signed_at']}",
                fg="green",
            )
        elif kind == CONSISTENCY:
            if old_file is None:
                raise click.UsageError("a consistency proof is checked against --old-checkpoint")
            old = Checkpoint.from_dict(_read_json(old_file))
            check_consistency(ConsistencyProof.from_dict(proof_data), old, new, trusted_key=pinned)
            click.secho(
                f"OK: the history of {new.tree_size} events extends the {old.tree_size} events"
                " signed earlier, unchanged",
                fg="green",
            )
        else:
            raise MalformedDocument(f"{proof_file} is not a proof ({INCLUSION} or {CONSISTENCY})")
    except (VerificationFailed, MalformedDocument) as error:
        click.secho(f"FAILED: {error}", fg="red", bold=True, err=True)
        sys.exit(1)


def _read_json(path: Path) -> dict[str, Any]:
    from ledger.integrity.receipts import MalformedDocument

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MalformedDocument(f"{path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise MalformedDocument(f"{path} does not hold a JSON object")
    return data

"""Settings from ``LEDGER_*`` environment variables, each with a laptop-friendly default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

#: name, default shown in help, meaning — the single list `tongjie --help` and the README show.
VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("LEDGER_DATABASE_URL", "(embedded)", "PostgreSQL DSN; unset starts an embedded server"),
    ("LEDGER_DATA_DIR", "~/.local/share/tongjie", "embedded PostgreSQL data and generated keys"),
    ("LEDGER_IDENTITY_KEY", "(generated)", "hex HMAC key for reader identity numbers"),
    ("LEDGER_POOL_SIZE", "8", "database connections kept open per process"),
    ("LEDGER_LOAN_LIMIT", "20", "open loans allowed per reader, consortium-wide"),
    ("LEDGER_GROUP_COMMIT", "on", "save commands arriving together in one transaction"),
    ("LEDGER_TRANSIT_OVERDUE_DAYS", "7", "a shipment not received after this many days is overdue"),
    ("LEDGER_READ_WAIT", "5", "seconds a query with after=POSITION waits for the projections"),
    ("LEDGER_PROJECTION_BATCH", "2000", "events the projection worker folds per transaction"),
    ("LEDGER_CLAIM_DAYS", "14", "a claimed return still on loan after this many days is disputed"),
    ("LEDGER_SIGNING_KEY", "(generated)", "hex Ed25519 seed that signs checkpoints"),
    ("LEDGER_CHECKPOINT_SECONDS", "300", "how often `tongjie serve` signs a checkpoint (0: never)"),
    ("LEDGER_SWEEP_SECONDS", "3600", "how often `tongjie serve` opens overdue disputes (0: never)"),
)


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "y", "yes", "on", "true", "t"}


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: platformdirs.user_data_path("tongjie"))
    identity_key_hex: str | None = None
    pool_size: int = 8
    loan_limit: int = 20
    group_commit: bool = True
    transit_overdue_days: int = 7
    read_wait: float = 5.0
    projection_batch: int = 2000
    claim_days: int = 14
    signing_key_hex: str | None = None
    checkpoint_seconds: float = 300.0
    sweep_seconds: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            database_url=env.get("LEDGER_DATABASE_URL") or None,
            data_dir=Path(env["LEDGER_DATA_DIR"]).expanduser()
            if env.get("LEDGER_DATA_DIR")
            else defaults.data_dir,
            identity_key_hex=env.get("LEDGER_IDENTITY_KEY") or None,
            pool_size=int(env.get("LEDGER_POOL_SIZE", defaults.pool_size)),
            loan_limit=int(env.get("LEDGER_LOAN_LIMIT", defaults.loan_limit)),
            group_commit=_flag(env.get("LEDGER_GROUP_COMMIT", "on")),
            transit_overdue_days=int(
                env.get("LEDGER_TRANSIT_OVERDUE_DAYS", defaults.transit_overdue_days)
            ),
            read_wait=float(env.get("LEDGER_READ_WAIT", defaults.read_wait)),
            projection_batch=int(env.get("LEDGER_PROJECTION_BATCH", defaults.projection_batch)),
            claim_days=int(env.get("LEDGER_CLAIM_DAYS", defaults.claim_days)),
            signing_key_hex=env.get("LEDGER_SIGNING_KEY") or None,
            checkpoint_seconds=float(
                env.get("LEDGER_CHECKPOINT_SECONDS", defaults.checkpoint_seconds)
            ),
            sweep_seconds=float(env.get("LEDGER_SWEEP_SECONDS", defaults.sweep_seconds)),
        )

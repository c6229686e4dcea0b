"""Serving the API, and the keys that open it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import click

from ledger.cli.base import main, open_ledger
from ledger.cli.jobs import PARENT_VARIABLE
from ledger.config import Settings


@main.group()
def keys() -> None:
    """API keys: one per desk system, or for the consortium administrator."""


@keys.command("create")
@click.option("--library", metavar="CODE", help="The library whose desk the key records for.")
@click.option("--admin", is_flag=True, help="A key for the consortium administrator.")
@click.option("--label", default="", help="Who holds it (shown in `keys list`).")
@click.pass_obj
def create(settings: Settings, library: str | None, admin: bool, label: str) -> None:
    """Create a key and print it once; only its hash is kept."""
    from ledger.domain.common import library_id
    from ledger.domain.errors import DomainError
    from ledger.domain.libraries import check_code
    from ledger.keys import create_key
    from ledger.store import connect, migrate, resolve_dsn

    if admin == bool(library):
        raise click.UsageError("give exactly one of --library CODE or --admin")
    if library:
        try:
            check_code(library)
        except DomainError as error:
            raise click.BadParameter(error.message, param_hint="--library") from None
        with open_ledger(settings) as ledger:
            member = ledger.load([library_id(library)])[library_id(library)]
        if not getattr(member, "member", False):
            raise click.ClickException(
                f"{library} is not a member library: register it first (POST /api/v1/libraries)"
            )
    dsn = resolve_dsn(settings)
    migrate(dsn)
    with connect(dsn, autocommit=True) as conn:
        key, token = create_key(conn, library=library, label=label)
    click.echo(f"key {key.key_id} for {library or 'the administrator'} (shown once, keep it):")
    click.echo(token)


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def revoke_key(settings: Settings, key_id: str) -> None:
    """Revoke a key at once; events it recorded keep naming it."""
    from ledger.keys import revoke
    from ledger.store import connect, resolve_dsn

    with connect(resolve_dsn(settings), autocommit=True) as conn:
        if not revoke(conn, key_id):
            raise click.ClickException(f"no live key {key_id}")
    click.echo(f"key {key_id} revoked")


@keys.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """List keys (never their secrets)."""
    from ledger.keys import list_keys
    from ledger.store import connect, resolve_dsn

    with connect(resolve_dsn(settings), autocommit=True) as conn:
        for key in list_keys(conn):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
            who = key.library or "administrator"
            click.echo(f"{key.key_id}  {who:<12} {state:<18} {key.label}")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads per process (concurrent requests each process serves).",
)
@click.option(
    "--example-key/--no-example-key",
    default=False,
    help="Create a desk key for SC-510100 and print a ready-to-paste curl example.",
)
@click.pass_obj
def serve(
    settings: Settings, host: str, port: int, workers: int, threads: int, example_key: bool
) -> None:
    """Run the HTTP API (gunicorn) and the projection worker."""
    from ledger.store import migrate, resolve_dsn

    dsn = resolve_dsn(settings)
    migrate(dsn)
    settings = replace(settings, database_url=dsn)
    os.environ["LEDGER_DATABASE_URL"] = dsn  # workers attach to the same database
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    if example_key:
        click.echo(_example(settings, base))
    click.echo(
        f"tongjie serves {base} ({workers} worker(s) × {threads} threads); Ctrl-C stops it.\n"
        f"  API reference {base}/docs   spec {base}/openapi.json   health {base}/healthz\n"
    )
    background = _start_background(settings)
    try:
        _Gunicorn(settings, host, port, workers, threads).run()
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=10)


def _start_background(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """The projection worker, the checkpoint signer and the dispute sweep, each its own
    process (each owns its connections; only the signer holds the signing key)."""
    assert settings.database_url is not None
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": settings.database_url,
        PARENT_VARIABLE: str(os.getpid()),
    }
    commands = [["project"]]
    if settings.checkpoint_seconds > 0:
        commands.append(["checkpoint", "--every", str(settings.checkpoint_seconds)])
    if settings.sweep_seconds > 0:
        commands.append(["disputes", "sweep", "--every", str(settings.sweep_seconds)])
    return [subprocess.Popen([sys.executable, "-m", "ledger", *c], env=env) for c in commands]


#: The desk the example key belongs to: 成都市图书馆, a member in the demo consortium.
EXAMPLE_DESK = "SC-510100"
#: The label of the example key: each start revokes the previous start's key of that label.
EXAMPLE_LABEL = "example (tongjie serve)"


def _example(settings: Settings, base: str) -> str:
    """A desk key for SC-510100 and curl lines that work against the data as it is now:
    the item shown is on loan right now and owned elsewhere, so returning it at 成都
    shows a cross-library return (通还) and its disposition.

    The token is shown once and only its hash is kept, so an earlier start's key cannot be
    shown again: it is revoked instead, and at most one example key is live."""
    from ledger.domain.common import library_id
    from ledger.keys import replace_key
    from ledger.store import connect

    assert settings.database_url is not None
    with connect(settings.database_url, autocommit=True) as conn:
        _, token, revoked = replace_key(conn, library=EXAMPLE_DESK, label=EXAMPLE_LABEL)
        candidates = conn.execute(
            "SELECT DISTINCT item_id FROM item_references"
            " WHERE kind = 'loan' AND owner <> %s LIMIT 500",
            (EXAMPLE_DESK,),
        ).fetchall()
    with open_ledger(settings) as ledger:
        desk = ledger.load([library_id(EXAMPLE_DESK)])[library_id(EXAMPLE_DESK)]
        items = ledger.load([row[0] for row in candidates]).values()
        item = next((i for i in items if getattr(i, "loan", None) is not None), None)
        owner = ledger.load([library_id(item.owner)])[library_id(item.owner)] if item else None
    auth = '-H "Authorization: Bearer $TJ_KEY"'
    lines = [
        f"A desk key of {getattr(desk, 'name', EXAMPLE_DESK)} ({EXAMPLE_DESK}), shown once:",
        "",
        f"  export TJ_KEY={token}",
    ]
    if revoked:
        lines[1:1] = [f"(the previous example key {', '.join(revoked)} is revoked)"]
    if item is None or owner is None or desk is None:
        lines += [
            f"  curl -s {base}/api/v1/items/{EXAMPLE_DESK}/510100000001 {auth}",
            "",
            "(no loan is open yet: `tongjie demo` loads a consortium with circulation)",
            "",
        ]
        return "\n".join(lines)
    body = json.dumps(
        {"owner": item.owner, "barcode": item.barcode, "library": EXAMPLE_DESK},
        ensure_ascii=False,
    )
    floats = str(owner.policy.return_mode) == "float"
    outcome = (
        f"it floats: it stays at {EXAMPLE_DESK} and circulates there"
        if floats
        else f"it waits at {EXAMPLE_DESK} to be sent home to {owner.name}"
    )
    lines += [
        f"  curl -s {base}/api/v1/items/{item.owner}/{item.barcode} {auth}",
        f"  curl -s -X POST {base}/api/v1/returns {auth} -H 'Content-Type: application/json' "
        f"-H 'Idempotency-Key: example-return-1' -d '{body}'",
        "",
        f"The first shows item {item.barcode} of {owner.name}, on loan from {item.loan.library}.",
        f"The second returns it at {EXAMPLE_DESK} (any member may take a return): {outcome}.",
        "Run it twice: the same Idempotency-Key answers the first response, records nothing.",
        "",
    ]
    return "\n".join(lines)


class _Gunicorn:
    """gunicorn run from Python: each worker builds its own ledger after the fork."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int, threads: int):
        from gunicorn.app.base import BaseApplication

        outer = self

        class App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in outer.options.items():
                    if key in self.cfg.settings:  # options newer than the installed gunicorn
                        self.cfg.set(key, value)

            def load(self) -> Any:
                from ledger.application import Circulation
                from web import create_app

                return create_app(Circulation.from_settings(settings))

        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 20,
            # A desk sends a command, waits for the reader, sends the next: gunicorn's 2 s
            # would close its connection between them, and a POST racing that close fails.
            # Idle connections wait in the gthread poller, not in a thread.
            "keepalive": 30,
            # Request lines and statuses only: bodies (identity numbers) are never logged,
            # and no URL carries one.
            "accesslog": "-",
            "access_log_format": '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms',
            "preload_app": False,  # each worker opens its own ledger (pool, committer) after fork
            "worker_exit": _close_ledger,
            # gunicorn 27's control socket defaults to one path per user: two servers (a test,
            # a benchmark, make run) would fight over it, and nothing here uses it.
            "control_socket_disable": True,
        }
        self.app = App()

    def run(self) -> None:
        self.app.run()


def _close_ledger(server: Any, worker: Any) -> None:
    """A stopping worker finishes its group-commit batch and closes its connections."""
    app = getattr(worker, "wsgi", None)
    ledger = getattr(app, "extensions", {}).get("tongjie.ledger") if app else None
    if ledger is not None:
        ledger.close()

"""Serving the API, and the keys that open it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import click

from ledger.cli import main
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
    from ledger.domain.libraries import check_code
    from ledger.keys import create_key
    from ledger.store import connect, migrate, resolve_dsn

    if admin == bool(library):
        raise click.UsageError("give exactly one of --library CODE or --admin")
    if library:
        check_code(library)
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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="Processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per process.")
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
    if example_key:
        _print_example(dsn, host, port)
    background = _start_background(dsn)
    try:
        _Gunicorn(settings, host, port, workers, threads).run()
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=10)


def _start_background(dsn: str) -> list[subprocess.Popen[bytes]]:
    """The projection worker, as its own process (it owns its connections)."""
    if "project" not in main.commands:
        return []
    env = {**os.environ, "LEDGER_DATABASE_URL": dsn}
    return [subprocess.Popen([sys.executable, "-m", "ledger", "project"], env=env)]


def _print_example(dsn: str, host: str, port: int) -> None:
    from ledger.keys import create_key
    from ledger.store import connect

    with connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, library="SC-510100", label="example (tongjie serve)")
    base = f"http://{host}:{port}"
    body = '{"owner": "SC-510100", "barcode": "510100000001", "library": "SC-510100"}'
    click.echo(
        "\nThe ledger is starting. Try it (a desk key of 成都市图书馆, SC-510100):\n\n"
        f"  export TJ_KEY={token}\n"
        f"  curl -s {base}/api/v1/items/SC-510100/510100000001 "
        '-H "Authorization: Bearer $TJ_KEY"\n'
        f'  curl -s -X POST {base}/api/v1/returns -H "Authorization: Bearer $TJ_KEY" '
        '-H "Idempotency-Key: try-1" -H "Content-Type: application/json" '
        f"-d '{body}'\n"
        f"\n  API reference: {base}/docs   spec: {base}/openapi.json   health: {base}/healthz\n"
    )


class _Gunicorn:
    """gunicorn run from Python: each worker builds its own ledger after the fork."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int, threads: int):
        from gunicorn.app.base import BaseApplication

        outer = self

        class App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in outer.options.items():
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
            "accesslog": "-",
            "preload_app": False,
        }
        self.app = App()

    def run(self) -> None:
        self.app.run()

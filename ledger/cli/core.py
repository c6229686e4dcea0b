"""Core commands: migrations, the demo consortium, status, readers' identities."""

from __future__ import annotations

import time

import click

from ledger.cli.base import main, open_ledger
from ledger.cli.integrity import echo_receipt
from ledger.config import Settings


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply pending database migrations (also done automatically at start)."""
    from ledger.store import migrate as apply
    from ledger.store import resolve_dsn

    applied = apply(resolve_dsn(settings))
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@main.command()
@click.option("--days", default=30, show_default=True, help="Days of circulation to simulate.")
@click.option("--items-per-library", default=40, show_default=True)
@click.option("--readers", default=2000, show_default=True)
@click.option("--loans-per-day", default=300, show_default=True)
@click.option("--seed", default=2021, show_default=True)
@click.pass_obj
def demo(
    settings: Settings,
    days: int,
    items_per_library: int,
    readers: int,
    loans_per_day: int,
    seed: int,
) -> None:
    """Load a synthetic consortium shaped like Sichuan–Chongqing's and simulate circulation.

    Does nothing when the consortium is already there, so it is safe to run at every start.
    """
    from ledger.demo.simulation import Scale, Simulation, already_loaded
    from ledger.progress import bar

    scale = Scale(days, items_per_library, readers, loans_per_day, seed)
    with open_ledger(settings) as app:
        if already_loaded(app):
            click.echo("the demo consortium is already loaded (tongjie status shows what it holds)")
            return
    with open_ledger(settings) as app, bar(None, "demo") as progress:
        current = {"what": ""}

        def tick(n: int, what: str) -> None:
            if what != current["what"]:
                current["what"] = what
                progress.set_description(what)
            progress.update(n)

        started = time.perf_counter()
        summary = Simulation(app, scale, progress=tick).run()
        elapsed = time.perf_counter() - started
    click.echo(f"demo loaded in {elapsed:.1f}s")
    for name, value in vars(summary).items():
        if name == "refused":
            refused = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
            click.echo(f"  {'refused by the rules':<24} {refused}")
        else:
            click.echo(f"  {name.replace('_', ' '):<24} {value}")


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Print what the ledger holds."""
    from ledger.eventlog import EventLog
    from ledger.status import counts

    with open_ledger(settings) as app:
        for label, value in counts(EventLog(app.pool)).items():
            click.echo(f"{label:<28} {value}")


@main.group()
def readers() -> None:
    """Readers' identities."""


@readers.command()
@click.option(
    "--number",
    prompt="Identity number",
    hide_input=True,
    help="The 18-character number (prompted, never echoed, when omitted).",
)
@click.option("--operator", default="admin:cli", show_default=True, help="Recorded as recorded_by.")
@click.pass_obj
def forget(settings: Settings, number: str, operator: str) -> None:
    """Honour a deletion request: unlink a person from their reader history."""
    from ledger import commands as c
    from ledger.domain.common import Actor
    from ledger.domain.errors import DomainError

    with open_ledger(settings) as app:
        try:
            reader_id = app.find_reader(number)
            reader = app.load([reader_id])[reader_id]
            library = getattr(reader, "home_library", None) or "SC-510000"
            result = app.execute(
                c.ForgetReader(reader_id=reader_id, library=library, actor=Actor(operator))
            )
        except DomainError as error:
            raise click.ClickException(error.message) from None
    click.echo(f"reader {reader_id} is no longer linked to that number; its history stays.")
    echo_receipt(result)

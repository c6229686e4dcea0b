"""Projections: the live worker and the batch rebuild."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

import click

from ledger.cli.base import main
from ledger.config import Settings

if TYPE_CHECKING:
    from ledger.projections.base import Projection


def _dsn(settings: Settings) -> str:
    from ledger.store import migrate, resolve_dsn

    dsn = resolve_dsn(settings)
    migrate(dsn)
    return dsn


@main.command()
@click.argument("names", nargs=-1)
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@click.pass_obj
def project(settings: Settings, names: tuple[str, ...], once: bool) -> None:
    """Follow the event log and keep projections up to date (exactly once): the named
    ones, or all.

    `tongjie serve` starts this in the background; run it yourself when the API runs
    elsewhere. Stop it with Ctrl-C or SIGTERM: the step in progress rolls back whole.
    """
    from ledger.projections.runner import LiveRunner

    chosen = _select(list(names))
    dsn = _dsn(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with LiveRunner(dsn, chosen, batch=settings.projection_batch) as runner:
        if once:
            started = time.perf_counter()
            steps = runner.catch_up()
            click.echo(f"caught up in {steps} step(s), {time.perf_counter() - started:.1f}s")
            return
        click.echo(f"projection worker following the log ({', '.join(runner.names)})", err=True)
        runner.run_forever(stop)


def _select(names: list[str] | None) -> list[Projection]:
    """The named projections (all for None); an unknown name is a usage error that lists
    the valid ones."""
    from ledger.projections import UnknownProjection, select

    try:
        return select(names)
    except UnknownProjection as error:
        raise click.BadParameter(str(error), param_hint="NAMES") from None


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Rebuild every projection.")
@click.pass_obj
def rebuild(settings: Settings, names: tuple[str, ...], all_: bool) -> None:
    """Rebuild projections from position 0 into fresh tables, then swap them in.

    The old tables keep serving until the swap, which happens in one transaction
    together with the tracking position; an interrupted rebuild changes nothing.
    """
    from ledger.progress import bar
    from ledger.projections import REGISTRY
    from ledger.replay import RebuildBusy
    from ledger.replay import rebuild as run

    if not names and not all_:
        raise click.UsageError(
            f"name the projections to rebuild, or --all; valid names: {', '.join(REGISTRY)}"
        )
    chosen = [p.name for p in _select(None if all_ else list(names))]
    dsn = _dsn(settings)
    with bar(None, f"rebuild {', '.join(chosen)}", unit="ev") as progress:

        def tick(position: int, head: int) -> None:
            if progress.total != head:
                progress.total = head
            progress.update(position - progress.n)

        try:
            report = run(dsn, chosen, progress=tick)
        except RebuildBusy as error:
            raise click.ClickException(str(error)) from None
    click.echo(
        f"rebuilt {', '.join(report.names)} up to position {report.position}: "
        f"{report.events_read} events folded in {report.seconds:.1f}s "
        f"({report.events_per_second:,.0f} log positions/s)"
    )
    for table, rows in report.rows_written.items():
        click.echo(f"  {table:<24} {rows} rows")

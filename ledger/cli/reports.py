"""Reports rebuilt by replay: ``tongjie report circulation``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ledger.cli.base import main
from ledger.config import Settings


@main.group()
def report() -> None:
    """Reports computed from the event log (see README, "Reports", for the definitions)."""


@report.command()
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--by", default="library", show_default=True, help="library | region | month | flow")
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json", "html"]),
)
@click.option("--library", metavar="CODE", help="See the report as this library's key sees it.")
@click.option(
    "--as-recorded-at",
    metavar="ISO-TIME",
    help="The report exactly as computed at that instant (only events recorded by then).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def circulation(
    settings: Settings,
    start: datetime,
    end: datetime,
    by: str,
    fmt: str,
    library: str | None,
    as_recorded_at: str | None,
    output: Path | None,
) -> None:
    """Loans, returns, cross-library flows, reader-visits, re-circulation, transfers, losses."""
    import psycopg

    from ledger.domain.errors import DomainError
    from ledger.reports import render
    from ledger.reports.circulation import Request
    from ledger.reports.circulation import report as compute
    from ledger.store import migrate, resolve_dsn

    try:
        at = datetime.fromisoformat(as_recorded_at) if as_recorded_at else None
    except ValueError:
        raise click.BadParameter("an ISO time with offset", param_hint="--as-recorded-at") from None
    request = Request(
        start.date(), end.date(), by, library, at, overdue_days=settings.transit_overdue_days
    )
    dsn = resolve_dsn(settings)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        try:
            result = compute(conn, request, wait=settings.read_wait)
            extra: dict[str, Any] = {}
            if fmt == "html":
                for grouping in ("month", "flow"):
                    extra[grouping] = compute(
                        conn, _with(request, grouping), wait=settings.read_wait
                    )
        except DomainError as error:
            raise click.ClickException(error.message) from None
    text = {
        "table": render.as_table,
        "csv": render.as_csv,
        "json": render.as_json,
    }.get(fmt, lambda r: render.as_html(r, extra["month"], extra["flow"]))(result)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


def _with(request: Any, by: str) -> Any:
    from dataclasses import replace

    return replace(request, by=by)

"""Disputes between libraries: list, evidence file, sweep, settlement sheet, ruling.

Reachable as ``tongjie disputes …`` and ``tongjie dispute …`` (``tongjie dispute
evidence ID`` reads best in the singular). The CLI acts as the operator named by
``--operator`` (the consortium administrator's side); desks use the HTTP API.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click

from ledger.cli.base import main, open_ledger
from ledger.config import Settings

if TYPE_CHECKING:
    from ledger.commands import Command

OPERATOR = click.option(
    "--operator", default="admin:cli", show_default=True, help="Recorded as recorded_by."
)


def _json(value: Any) -> str:
    from ledger.jsonout import to_json

    return to_json(value)


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(getattr(error, "message", str(error)))


@click.group()
def disputes() -> None:
    """Disputes between libraries about one item, and their evidence."""


main.add_command(disputes, "disputes")
main.add_command(disputes, "dispute")


@disputes.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only disputes still open.")
@click.option("--library", metavar="CODE", help="Only disputes this library is a party to.")
@click.option("--limit", default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def list_(settings: Settings, only_open: bool, library: str | None, limit: int, fmt: str) -> None:
    """List disputes, newest first."""
    from ledger.disputes.queries import list_disputes
    from ledger.domain.errors import DomainError
    from ledger.eventlog import EventLog

    with open_ledger(settings) as app:
        try:
            page = list_disputes(
                EventLog(app.pool), only_open=only_open, library=library, limit=limit
            )
        except DomainError as error:
            raise _fail(error) from None
    if fmt == "json":
        click.echo(_json(page))
        return
    rows = page["disputes"]
    if not rows:
        click.echo("no disputes")
        return
    for d in rows:
        auto = " (auto)" if d["automatic"] else ""
        ruling = (
            f" liable={d['liable_library'] or 'nobody'} ¥{d['compensation_cny']}"
            if d["status"] == "resolved"
            else ""
        )
        click.echo(
            f"{d['dispute_id']}  {d['status']:<9} {d['kind']:<16} {d['owner']}/{d['barcode']:<14}"
            f" {d['opened_by']} vs {d['other_party']}  {d['opened_at']:%Y-%m-%d}{auto}{ruling}"
        )


@disputes.command()
@click.argument("dispute_id", type=click.UUID)
@click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def evidence(settings: Settings, dispute_id: UUID, fmt: str, output: Path | None) -> None:
    """The evidence file: the item's timeline, who recorded what when, who held it last."""
    from ledger.disputes.evidence import build, render_html
    from ledger.domain.errors import DomainError
    from ledger.eventlog import EventLog

    with open_ledger(settings) as app:
        try:
            file = build(EventLog(app.pool), dispute_id)
        except DomainError as error:
            raise _fail(error) from None
    text = render_html(file) if fmt == "html" else _json(file)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@disputes.command()
@click.option(
    "--transfer-days", type=int, help="Days a shipment may take [LEDGER_TRANSIT_OVERDUE_DAYS]."
)
@click.option(
    "--claim-days", type=int, help="Days a claimed return may stay unfound [LEDGER_CLAIM_DAYS]."
)
@click.option(
    "--every",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Keep sweeping every SECONDS (what `tongjie serve` runs) instead of once.",
)
@click.pass_obj
def sweep(
    settings: Settings, transfer_days: int | None, claim_days: int | None, every: float | None
) -> None:
    """Open disputes for shipments not received and returns claimed but not found (once each).

    Safe to run as often as you like, from several machines at once.
    """
    from ledger.disputes.sweep import sweep as run
    from ledger.eventlog import EventLog

    with open_ledger(settings) as app:
        log = EventLog(app.pool)
        while True:
            report = run(
                app,
                log,
                transfer_days=transfer_days or settings.transit_overdue_days,
                claim_days=claim_days or settings.claim_days,
            )
            if every is None or report.opened:
                _echo_sweep(report)
            if every is None:
                return
            time.sleep(max(every, 1.0))


def _echo_sweep(report: Any) -> None:
    click.echo(f"opened {len(report.opened)} dispute(s); {report.already_open} already open")
    for dispute_id in report.opened:
        click.echo(f"  {dispute_id}")
    if report.single_library_claims:
        click.echo(f"{report.single_library_claims} claim(s) involve a single library: no dispute")
    for code, n in sorted(report.refused.items()):
        click.echo(f"refused ({code}): {n}")


@disputes.command()
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--library", metavar="CODE", help="Only pairs this library is in.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def settlement(settings: Settings, start: Any, end: Any, library: str | None, fmt: str) -> None:
    """Per pair of libraries: items lost in the other's custody, compensation resolved."""
    from ledger.disputes.queries import settlement as sheet
    from ledger.domain.errors import DomainError
    from ledger.eventlog import EventLog

    with open_ledger(settings) as app:
        try:
            result = sheet(EventLog(app.pool), start.date(), end.date(), library=library)
        except DomainError as error:
            raise _fail(error) from None
    if fmt == "json":
        click.echo(_json(result))
        return
    click.echo(f"settlement {result['from']} … {result['to']} ({result['scope']})")
    click.echo(f"{'payer':<14}{'payee':<14}{'items lost':>11}{'rulings':>9}{'CNY':>12}")
    for row in result["rows"]:
        click.echo(
            f"{row['payer']:<14}{row['payee']:<14}{row['items_lost_in_payer_custody']:>11}"
            f"{row['disputes_resolved']:>9}{row['compensation_cny']:>12}"
        )
    click.echo(f"{'total':<28}{'':>20}{result['total_compensation_cny']:>12}")


@disputes.command("open")
@click.option("--owner", required=True)
@click.option("--barcode", required=True)
@click.option("--kind", required=True, type=click.Choice(
    ["claimed_returned", "lost_in_transit", "not_received", "damaged", "other"]))  # fmt: skip
@click.option("--library", required=True, help="The library opening the dispute.")
@click.option("--against", "other_party", required=True, help="The other party.")
@click.option("--statement", required=True)
@OPERATOR
@click.pass_obj
def open_(settings: Settings, operator: str, **arguments: Any) -> None:
    """Open a dispute on a library's behalf."""
    from ledger import commands as c
    from ledger.domain.common import Actor

    _record(settings, c.OpenDispute(actor=Actor(operator), **arguments))


@disputes.command()
@click.argument("dispute_id", type=click.UUID)
@click.option("--liable", "liable_library", help="The liable party (omit: nobody).")
@click.option("--compensation", default="0", show_default=True, help="CNY, e.g. 85.50")
@click.option("--text", required=True, help="The ruling, in words.")
@OPERATOR
@click.pass_obj
def resolve(settings: Settings, operator: str, **arguments: Any) -> None:
    """Rule on a dispute (the consortium administrator)."""
    from ledger import commands as c
    from ledger.domain.common import Actor

    _record(settings, c.ResolveDispute(actor=Actor(operator), **arguments))


def _record(settings: Settings, command: Command) -> None:
    from ledger.cli.integrity import echo_receipt
    from ledger.domain.errors import DomainError

    with open_ledger(settings) as app:
        try:
            result = app.execute(command)
        except DomainError as error:
            raise _fail(error) from None
    click.echo(_json(result.outcome))
    echo_receipt(result)

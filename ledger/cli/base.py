"""The ``tongjie`` group and what every command module shares: settings, the writer."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from ledger.cli.jobs import PARENT_VARIABLE, die_with_parent
from ledger.config import VARIABLES, Settings

if TYPE_CHECKING:
    from ledger.application import Circulation

EPILOG = "Environment:\n\n" + "\n\n".join(
    f"  {name:<22} {meaning} [default: {default}]" for name, default, meaning in VARIABLES
)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """tongjie — the circulation ledger of a consortium of public libraries (通借通还)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Settings.from_env()
    if parent := os.environ.get(PARENT_VARIABLE):  # a background job of `serve`
        die_with_parent(int(parent))


@contextmanager
def open_ledger(settings: Settings) -> Iterator[Circulation]:
    """The writer for one CLI command: database resolved, migrated, closed afterwards."""
    from ledger.application import Circulation

    app = Circulation.from_settings(settings)
    try:
        yield app
    finally:
        app.close()

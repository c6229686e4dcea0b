"""The ``tongjie`` command. Each module here adds the commands of one concern to the
group defined in ``ledger.cli.base``."""

from __future__ import annotations

from ledger.cli import core, disputes, integrity, projections, reports, service  # noqa: F401
from ledger.cli.base import main, open_ledger

__all__ = ["main", "open_ledger"]

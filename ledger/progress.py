"""Progress bars for long work: shown on a terminal, silent in CI and pipes."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def bar(total: int | None, desc: str, unit: str = "cmd", **kwargs: Any) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not progress_enabled(),
        dynamic_ncols=True,
        **kwargs,
    )
